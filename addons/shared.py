"""The state store several instances share (`state-store: redis://...`): opened when the config
names one, checked at start-up, kept connected by one background task, closed in `done`.

What goes into it is each concern's own business (the pool's rests and cursors, usage rows, the tokens,
the management switches); they find the store on `runtime.shared` (None: local state only).
"""

from __future__ import annotations

import asyncio
import logging

import redis
from redis.exceptions import RedisError

from auth.shared.instances import Heartbeat
from auth.shared.rests import SharedPool
from auth.shared.store import CONNECT_TIMEOUT, SharedStore, redacted
from routing.config import Config
from routing.runtime import Runtime
from routing.shared_usage import UsageStream, UsageView

logger = logging.getLogger("cliproxy")

_STOPPING: set[asyncio.Future] = set()


class SharedState:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._usage_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        runtime.config_listeners.append(self._follow)

    def problem(self, config: Config) -> str | None:
        """A config naming a store this proxy cannot reach, where that must stop it: at start-up,
        or when a reload switches to another store (the old config then stays in force)."""
        if config.state_store == "local" or not config.state_store_required:
            return None
        current = self.runtime.shared
        if current is not None and (current.url, current.prefix) == (config.state_store, config.state_store_prefix):
            return None
        # Blocking, at most the connect timeout: this runs while the config loads, before any
        # request is served on it.
        client = redis.Redis.from_url(
            config.state_store, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        try:
            client.ping()
        except (RedisError, OSError) as e:
            return (
                f"state-store: {redacted(config.state_store)} cannot be reached ({type(e).__name__}). "
                "Start Redis there, fix the URL, or set `state-store-required: false` to start on "
                "this instance's own state and share once it is reachable"
            )
        finally:
            client.close()
        return None

    def _follow(self, config: Config) -> None:
        current = self.runtime.shared
        wanted = None if config.state_store == "local" else (config.state_store, config.state_store_prefix)
        if current is not None and wanted == (current.url, current.prefix):
            return
        self._stop()
        if wanted is None:
            self.runtime.shared = None
            return
        store = self.runtime.shared = SharedStore(*wanted)
        runtime = self.runtime
        runtime.shared_pool = SharedPool(store, runtime.pool, runtime.quota)
        runtime.heartbeat = Heartbeat(store, lambda: f"{runtime.config.host}:{runtime.config.port}")
        runtime.usage_stream = UsageStream(store)
        runtime.usage_view = UsageView(store)
        logger.info(f"cliproxy: sharing pool state through {self.runtime.shared.address} as {self.runtime.shared.instance}")
        if self._loop is not None:
            self._start()

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.runtime.shared is not None:
            self._start()

    def _start(self) -> None:
        store = self.runtime.shared
        if store is None or (self._task is not None and not self._task.done()):
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(store.run(), name="cliproxy-state-store")
        if self.runtime.heartbeat is not None:
            self._heartbeat_task = loop.create_task(self.runtime.heartbeat.run(), name="cliproxy-heartbeat")
        if self.runtime.usage_stream is not None:
            self._usage_task = loop.create_task(self.runtime.usage_stream.run(), name="cliproxy-usage-stream")

    def _stop(self):
        task, self._task = self._task, None
        beating, self._heartbeat_task = self._heartbeat_task, None
        writing, self._usage_task = self._usage_task, None
        store, heartbeat = self.runtime.shared, self.runtime.heartbeat
        stream, view = self.runtime.usage_stream, self.runtime.usage_view
        self.runtime.usage_stream = self.runtime.usage_view = None
        if stream is not None:
            stream.close()
        if self.runtime.shared_pool is not None:
            self.runtime.shared_pool.close()
            self.runtime.shared_pool = None
        if heartbeat is not None:
            heartbeat.close()
            self.runtime.heartbeat = None
        if task is None:
            return None
        if store is not None:
            store.stop()
        task.cancel()
        others = [t for t in (beating, writing) if t is not None]
        for other in others:
            other.cancel()

        async def close() -> None:
            await asyncio.wait([task, *others])
            if stream is not None:
                await stream.flush()  # this instance's last rows, if the store takes them now
            if view is not None:
                view.close()
            if heartbeat is not None:
                await heartbeat.leave()
            if store is not None:
                await store.aclose()

        waiter = asyncio.ensure_future(close())
        _STOPPING.add(waiter)
        waiter.add_done_callback(_STOPPING.discard)
        return waiter

    def done(self):
        return self._stop()
