"""Which instances share the state store: each keeps a key of its own alive (a heartbeat) with
its listener's address and its version, so that any of them can list the others."""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from auth.shared.store import SharedStore

HEARTBEAT_INTERVAL = 10.0
# Missing three beats in a row: gone (or cut off from the store).
HEARTBEAT_TTL = 3 * HEARTBEAT_INTERVAL
_MAX_LISTED = 256


def _version() -> str:
    try:
        with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


VERSION = _version()


class Heartbeat:
    def __init__(self, store: SharedStore, address: Callable[[], str], interval: float = HEARTBEAT_INTERVAL) -> None:
        self.store = store
        self.address = address  # the listener's host:port, as the config has it now
        self.interval = interval
        self.started = time.time()
        store.on_connect.append(self.beat)

    def key(self, instance: str) -> str:
        return self.store.key("instance", instance)

    def _value(self) -> str:
        return json.dumps(
            {"instance": self.store.instance, "address": self.address(), "version": VERSION, "started": self.started}
        )

    async def beat(self) -> None:
        await self.store.client.set(self.key(self.store.instance), self._value(), ex=max(1, round(self.interval * 3)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.store.call(lambda client: self.beat(), None)

    async def leave(self) -> None:
        """Gone on purpose: no need to wait for the key to expire."""
        await self.store.call(lambda client: client.delete(self.key(self.store.instance)), None)

    def close(self) -> None:
        if self.beat in self.store.on_connect:
            self.store.on_connect.remove(self.beat)

    async def instances(self) -> list[dict[str, Any]] | None:
        """Every instance sharing the store now (this one included), or None when the store
        cannot be read."""

        async def read(client) -> list[dict[str, Any]]:
            keys = [k async for k in client.scan_iter(match=self.key("*"), count=_MAX_LISTED)][:_MAX_LISTED]
            found = []
            for raw in await client.mget(keys) if keys else []:
                try:
                    value = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                if isinstance(value, dict) and isinstance(value.get("instance"), str):
                    found.append(
                        {
                            "instance": value["instance"],
                            "address": str(value.get("address", "")),
                            "version": str(value.get("version", "")),
                            "started": value.get("started") if isinstance(value.get("started"), (int, float)) else None,
                            "self": value["instance"] == self.store.instance,
                        }
                    )
            return sorted(found, key=lambda i: i["instance"])

        try:
            return await self.store.call(read, None)
        except RedisError:
            return None
