"""The pool's state as several instances share it through the state store.

What is shared: every rest the pool records (per (credential, model), per credential, quota
windows) as a key that expires with the rest; the credentials switched off through the
management API (one set); the round-robin cursors (one counter per model); the latest quota
snapshot per credential. Each change is announced on one pub/sub channel, and every instance
applies what the others announce to its own pool.

The pool itself stays local and synchronous: a pick never waits on the store for a rest.
Changes go out in order through one background writer, batched in a pipeline; a store that is
down drops them, and the next (re)connection pushes this instance's state again and reads the
others' back (`synchronise`). Only the round-robin cursor is asked for on the request path
(`position`), one round trip, with the local cursor as the fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from auth.pool import Cooldown, Pool, RestScope
from auth.quota import QuotaBook, QuotaSnapshot, Window
from auth.shared.store import SharedStore, subscribe

logger = logging.getLogger("cliproxy")

# A cursor nobody advanced for this long starts again at 0 (models come and go).
CURSOR_TTL = 86400
# A quota snapshot older than this says little about the credential any more.
QUOTA_TTL = 86400
# Seconds between two quota snapshots of one credential sent to the store (the latest wins).
SNAPSHOT_INTERVAL = 1.0
_SCOPES = ("model", "credential", "quota")
_KINDS = ("quota", "unreachable", "auth", "error")
_SCAN_BATCH = 500
# What a value read from the store may hold at most: another instance wrote it, but a store is
# no place to trust blindly.
_MAX_VALUE = 16384

Op = Callable[[Pipeline], Any]


class SharedPool:
    """One pool's (and its quota book's) link to the state store."""

    def __init__(self, store: SharedStore, pool: Pool, quota: QuotaBook) -> None:
        self.store = store
        self.pool = pool
        self.quota = quota
        self.channel = store.key("events")
        self._queue: list[Op] = []
        self._queued_switches: list[tuple[str, bool]] = []
        # Switches not yet known to be in the store: replayed on the next connection, so that
        # one made while the store was away is not undone by reading the store back.
        self._unsent_switches: dict[str, bool] = {}
        # Rests this instance saw end while the store was away, and when (wall clock): on return,
        # a rest in the store written before that is over, whoever wrote it.
        self._unsent_clears: dict[tuple[str, str, str], float] = {}
        self._snapshots_due: dict[str, QuotaSnapshot] = {}
        self._writer: asyncio.Task | None = None
        self._listener: asyncio.Task | None = None
        self._pubsub: PubSub | None = None
        # While a read-back is under way: the switches and clears made or heard meanwhile, in
        # order, which are newer than what it reads.
        self._window: list[tuple] | None = None
        self._closed = False
        pool.observer = self
        quota.observer = self.snapshot
        store.on_connect.append(self.synchronise)

    def close(self) -> None:
        """Stop sharing (the config dropped or changed the store)."""
        self._closed = True
        if self.pool.observer is self:
            self.pool.observer = None
        if self.quota.observer == self.snapshot:
            self.quota.observer = None
        if self.synchronise in self.store.on_connect:
            self.store.on_connect.remove(self.synchronise)
        for task in (self._writer, self._listener):
            if task is not None:
                task.cancel()

    # -- keys --------------------------------------------------------------------------------

    def rest_key(self, scope: str, credential_id: str, model: str) -> str:
        return self.store.key("rest", scope, credential_id, model)

    def quota_key(self, credential_id: str) -> str:
        return self.store.key("quota", credential_id)

    @property
    def disabled_key(self) -> str:
        return self.store.key("disabled")

    def cursor_key(self, cursor: str) -> str:
        return self.store.key("cursor", cursor)

    # -- the pool's observer (request path: queue and return) ---------------------------------

    def rested(self, scope: RestScope, credential_id: str, model: str, cooldown: Cooldown, left: float) -> None:
        if left <= 0:
            return
        if self._window is not None:
            self._window.append(("rest", scope, credential_id, model))
        value = self._rest_value(scope, credential_id, model, cooldown, time.time() + left)
        key = self.rest_key(scope, credential_id, model)
        milliseconds = max(1, int(left * 1000))
        message = json.dumps({"op": "rest", **value})

        def write(pipe: Pipeline) -> None:
            pipe.set(key, json.dumps(value), px=milliseconds)
            pipe.publish(self.channel, message)

        self._send(write)

    def cleared(self, scope: RestScope, credential_id: str, model: str) -> None:
        if self._window is not None:
            self._window.append(("clear", scope, credential_id, model))
        if not self.store.up and not self._closed:
            self._unsent_clears[(scope, credential_id, model)] = time.time()
        key = self.rest_key(scope, credential_id, model)
        message = json.dumps({"op": "clear", "s": scope, "c": credential_id, "m": model, "i": self.store.instance})

        def write(pipe: Pipeline) -> None:
            pipe.delete(key)
            pipe.publish(self.channel, message)

        self._send(write)

    def switched(self, credential_id: str, disabled: bool) -> None:
        self._unsent_switches[credential_id] = disabled
        if self._window is not None:
            self._window.append(("switch", credential_id, disabled))
        message = json.dumps({"op": "switch", "c": credential_id, "d": disabled, "i": self.store.instance})

        def write(pipe: Pipeline) -> None:
            if disabled:
                pipe.sadd(self.disabled_key, credential_id)
            else:
                pipe.srem(self.disabled_key, credential_id)
            pipe.publish(self.channel, message)

        self._send(write, [(credential_id, disabled)])

    def snapshot(self, credential_id: str, snapshot: QuotaSnapshot) -> None:
        """The quota book took a new snapshot from an upstream answer (most answers carry one):
        the latest per credential goes out at most once per SNAPSHOT_INTERVAL, so that a busy
        credential costs every instance one message a second, not one per request. An exhausted
        window travels at once anyway, as a rest."""
        waiting = credential_id in self._snapshots_due
        self._snapshots_due[credential_id] = snapshot
        if waiting:
            return
        try:
            asyncio.get_running_loop().call_later(SNAPSHOT_INTERVAL, self._send_snapshot, credential_id)
        except RuntimeError:  # no loop (a pool used outside the proxy): nothing to share with
            self._snapshots_due.pop(credential_id, None)

    def _send_snapshot(self, credential_id: str) -> None:
        snapshot = self._snapshots_due.pop(credential_id, None)
        if snapshot is None or self._closed:
            return
        encoded = _encode_snapshot(snapshot)
        key = self.quota_key(credential_id)
        message = json.dumps({"op": "quota", "c": credential_id, "q": encoded, "i": self.store.instance})

        def write(pipe: Pipeline) -> None:
            pipe.set(key, json.dumps({"c": credential_id, "q": encoded}), ex=QUOTA_TTL)
            pipe.publish(self.channel, message)

        self._send(write)

    # -- the round-robin cursor (request path: one round trip) --------------------------------

    async def position(self, cursor: str) -> int | None:
        """Where the shared round-robin sequence `cursor` stands, advanced by one; None when the
        store cannot say now (the pool's own cursor then serves)."""
        key = self.cursor_key(cursor)

        async def advance(client) -> int:
            count = int(await client.incr(key))
            if count == 1:
                # A new sequence: it lapses after a quiet day. Set once, not on every pick (a
                # second command costs this request path 40% more); a lapsed cursor restarts at
                # 0, which round-robin does not mind.
                await client.expire(key, CURSOR_TTL)
            return count - 1

        return await self.store.call(advance, None)

    # -- writing -----------------------------------------------------------------------------

    def _send(self, op: Op, switches: list[tuple[str, bool]] | None = None) -> None:
        """Queue `op` for the writer; `switches` are known to be in the store once it ran."""
        if self._closed or not self.store.up:
            return  # the next connection pushes this instance's state anyway
        self._queue.append(op)
        if switches:
            self._queued_switches.extend(switches)
        if self._writer is None or self._writer.done():
            try:
                self._writer = asyncio.get_running_loop().create_task(self._write(), name="cliproxy-shared-pool")
            except RuntimeError:  # no loop (a pool used outside the proxy): nothing to share with
                self._queue.clear()
                self._queued_switches.clear()

    async def _write(self) -> None:
        # One writer, so that a rest and the success clearing it reach the store in that order.
        while self._queue:
            batch, self._queue = self._queue, []
            switches, self._queued_switches = self._queued_switches, []

            async def execute(client) -> bool:
                pipe = client.pipeline(transaction=False)
                for op in batch:
                    op(pipe)
                await pipe.execute()
                return True

            try:
                sent = await self.store.call(execute, False)
            except Exception:  # noqa: BLE001 - a bug here must not end the sharing silently
                logger.exception("cliproxy: could not write pool state to the state store")
                sent = False
            if sent:
                for credential_id, disabled in switches:
                    if self._unsent_switches.get(credential_id) == disabled:
                        del self._unsent_switches[credential_id]

    # -- reading what the others announce -----------------------------------------------------

    def apply(self, raw: bytes | str) -> None:
        """Apply one announcement from the channel (another instance's change)."""
        try:
            if len(raw) > _MAX_VALUE:
                return
            message = json.loads(raw)
            if not isinstance(message, dict) or message.get("i") == self.store.instance:
                return
            op = message.get("op")
            if op == "rest":
                if self._adopt_rest(message) and self._window is not None:
                    self._window.append(("rest", message["s"], message["c"], message["m"]))
            elif op == "clear":
                scope, credential_id, model = message["s"], message["c"], message["m"]
                if scope in _SCOPES and isinstance(credential_id, str) and isinstance(model, str):
                    self.pool.drop_rest(scope, credential_id, model)
                    if self._window is not None:
                        self._window.append(("clear", scope, credential_id, model))
            elif op == "switch":
                if isinstance(message["c"], str) and isinstance(message["d"], bool):
                    self.pool.adopt_switch(message["c"], message["d"])
                    if self._window is not None:
                        self._window.append(("switch", message["c"], message["d"]))
            elif op == "quota":
                self._adopt_snapshot(message)
        except (ValueError, KeyError, TypeError):
            logger.debug("cliproxy: ignored an unreadable announcement on the state store's channel")

    def _adopt_rest(self, value: dict) -> bool:
        scope, credential_id, model = value["s"], value["c"], value["m"]
        reason, kind, level, end = value["r"], value["k"], value["l"], value["e"]
        if scope not in _SCOPES or kind not in _KINDS:
            return False
        if not (isinstance(credential_id, str) and isinstance(model, str) and isinstance(reason, str)):
            return False
        if not isinstance(level, int) or not isinstance(end, (int, float)):
            return False
        # Wall clocks agree across machines (NTP); the pool counts on its monotonic one.
        return self.pool.adopt_rest(scope, credential_id, model, reason[:200], kind, max(0, min(level, 64)), end - time.time())

    def _adopt_snapshot(self, value: dict) -> None:
        credential_id = value["c"]
        if isinstance(credential_id, str):
            self.quota.adopt(credential_id, _decode_snapshot(value["q"]))

    def _rest_value(self, scope: str, credential_id: str, model: str, cooldown: Cooldown, end: float) -> dict:
        return {
            "s": scope,
            "c": credential_id,
            "m": model,
            "r": cooldown.reason,
            "k": cooldown.kind,
            "l": cooldown.level,
            "e": round(end, 3),
            "i": self.store.instance,
            "t": round(time.time(), 3),  # written at
        }

    async def _listen(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self.apply(message["data"])
        except (RedisError, OSError) as e:
            self.store.lost(e)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    # -- (re)connection ----------------------------------------------------------------------

    async def synchronise(self) -> None:
        """Listen to the others, read back what they wrote while this instance was away, and
        push what it recorded meanwhile.

        Requests go on during this: a rest, clear or switch made here or announced by another
        instance while the read-back is on its way is newer than what it read, so it is noted
        (`_window`) and wins over the read-back. The pushes go through the writer, after every
        change already queued and before any made later."""
        if self._listener is not None:
            self._listener.cancel()
        client = self.store.client
        pubsub = client.pubsub()
        # Subscribed before reading back: nothing announced meanwhile is missed.
        await subscribe(pubsub, self.channel)
        self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub), name="cliproxy-shared-events")
        self._window = []
        try:
            members = await client.smembers(self.disabled_key)
            rests = await _read_all(client, self.store.key("rest", "*"))
            quota = await _read_all(client, self.store.key("quota", "*"))
        finally:
            window, self._window = self._window, None
        self._merge_switches({m.decode() if isinstance(m, bytes) else m for m in members}, window)
        self._merge_rests(
            rests,
            cleared={event[1:] for event in window if event[0] == "clear"},
            recorded={event[1:] for event in window if event[0] == "rest"},
        )
        self._merge_quota(quota)

    def _merge_switches(self, members: set[str], window: list[tuple]) -> None:
        pending = dict(self._unsent_switches)
        # A credential switched off here stays off (a store that lost its data forgets nothing
        # an instance holds); one switched here while the store was away wins over the store.
        disabled = members | set(self.pool.disabled)
        for credential_id, off in [*pending.items(), *((e[1], e[2]) for e in window if e[0] == "switch")]:
            if off:
                disabled.add(credential_id)
            else:
                disabled.discard(credential_id)
        self.pool.adopt_switches(disabled)
        changes = {cid: True for cid in disabled - members}
        for cid in pending:  # announced even where the store agrees: the others may not
            changes[cid] = cid in disabled
        if not changes:
            return
        instance = self.store.instance
        messages = [json.dumps({"op": "switch", "c": cid, "d": off, "i": instance}) for cid, off in changes.items()]

        def write(pipe: Pipeline) -> None:
            for (credential_id, off), message in zip(changes.items(), messages):
                if off:
                    pipe.sadd(self.disabled_key, credential_id)
                else:
                    pipe.srem(self.disabled_key, credential_id)
                pipe.publish(self.channel, message)

        self._send(write, list(pending.items()))

    def _merge_rests(self, found: list[tuple[str, bytes]], *, cleared: set[tuple], recorded: set[tuple]) -> None:
        now = time.time()
        ended_away, self._unsent_clears = self._unsent_clears, {}
        held = {(scope, cid, model): (c, now + left) for scope, cid, model, c, left in self.pool.held_rests()}
        remote: dict[tuple[str, str, str], float] = {}
        stale: list[tuple[str, tuple[str, str, str]]] = []
        for key, raw in found:
            try:
                value = json.loads(raw)
                ident = (value["s"], value["c"], value["m"])
                if ident not in held and (
                    value.get("i") == self.store.instance or _written_at(value) <= ended_away.get(ident, 0.0)
                ):
                    stale.append((key, ident))  # cleared here while the store was away
                    continue
                if ident in cleared:
                    continue  # cleared since it was read
                remote[ident] = float(value["e"])
                self._adopt_rest(value)
            except (ValueError, KeyError, TypeError):
                continue
        pushes = []
        for (scope, cid, model), (cooldown, end) in held.items():
            if (scope, cid, model) in recorded:
                # Recorded or announced during the read-back: its writer sends it, and the read
                # may predate that, or another instance's clear of it.
                continue
            # A rest adopted from the store comes back with the same end, give or take the
            # clocks' reading; only one the store lacks or holds shorter is pushed.
            if remote.get((scope, cid, model), 0.0) >= end - 0.5:
                continue
            value = self._rest_value(scope, cid, model, cooldown, end)
            pushes.append((self.rest_key(scope, cid, model), value, max(1, int((end - now) * 1000))))
        if not (stale or pushes):
            return
        clears = [
            json.dumps({"op": "clear", "s": scope, "c": cid, "m": model, "i": self.store.instance})
            for _, (scope, cid, model) in stale
        ]

        def write(pipe: Pipeline) -> None:
            if stale:
                pipe.delete(*(key for key, _ in stale))
            for message in clears:
                pipe.publish(self.channel, message)
            for key, value, milliseconds in pushes:
                pipe.set(key, json.dumps(value), px=milliseconds)
                # Maybe recorded while the store was away: announced, as any other.
                pipe.publish(self.channel, json.dumps({"op": "rest", **value}))

        self._send(write)

    def _merge_quota(self, found: list[tuple[str, bytes]]) -> None:
        remote: dict[str, float] = {}
        for _, raw in found:
            try:
                value = json.loads(raw)
                snapshot = _decode_snapshot(value["q"])
                remote[value["c"]] = snapshot.observed_at
                self.quota.adopt(value["c"], snapshot)
            except (ValueError, KeyError, TypeError):
                continue
        newer = [
            (self.quota_key(cid), json.dumps({"c": cid, "q": _encode_snapshot(snapshot)}))
            for cid, snapshot in self.quota.all().items()
            if remote.get(cid, 0.0) < snapshot.observed_at
        ]
        if not newer:
            return

        def write(pipe: Pipeline) -> None:
            for key, value in newer:
                pipe.set(key, value, ex=QUOTA_TTL)

        self._send(write)


def _written_at(value: dict) -> float:
    """When another instance wrote a rest (one written before "t" was kept: long ago)."""
    written = value.get("t", 0.0)
    return float(written) if isinstance(written, (int, float)) else 0.0


async def _read_all(client, pattern: str) -> list[tuple[str, bytes]]:
    """Every (key, value) matching `pattern` (values that expired meanwhile left out)."""
    keys = [k async for k in client.scan_iter(match=pattern, count=_SCAN_BATCH)]
    found: list[tuple[str, bytes]] = []
    for start in range(0, len(keys), _SCAN_BATCH):
        chunk = keys[start : start + _SCAN_BATCH]
        for key, raw in zip(chunk, await client.mget(chunk)):
            if raw is not None and len(raw) <= _MAX_VALUE:
                found.append((key.decode() if isinstance(key, bytes) else key, raw))
    return found


def _encode_snapshot(snapshot: QuotaSnapshot) -> dict:
    return {
        "t": snapshot.observed_at,
        "w": [[w.name, w.used, w.remaining, w.limit, w.resets_at, w.status] for w in snapshot.windows],
    }


def _decode_snapshot(value: Any) -> QuotaSnapshot:
    observed = value["t"]
    if not isinstance(observed, (int, float)):
        raise TypeError("observed_at")
    windows = []
    for name, used, remaining, limit, resets_at, status in value["w"][:32]:
        if not isinstance(name, str) or (status is not None and not isinstance(status, str)):
            raise TypeError("window")
        for number in (used, resets_at):
            if number is not None and not isinstance(number, (int, float)):
                raise TypeError("window")
        for count in (remaining, limit):
            if count is not None and not isinstance(count, int):
                raise TypeError("window")
        windows.append(Window(name[:32], used, remaining, limit, resets_at, status and status[:32]))
    return QuotaSnapshot(float(observed), tuple(windows))
