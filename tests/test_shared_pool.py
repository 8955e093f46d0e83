"""auth/shared/rests.py against a real redis-server: two pools (two instances) sharing one store,
in one event loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from auth.credential import Credential
from auth.pool import Pool
from auth.quota import QuotaBook
from auth.shared.instances import Heartbeat
from auth.shared.rests import SharedPool
from auth.shared.store import SharedStore
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - a fixture

PREFIX = "cliproxy-test:"
CRED = Credential(provider="claude", kind="api-key", secret="sk-ant-unit-shared-0001", source="config")
OTHER = Credential(provider="claude", kind="api-key", secret="sk-ant-unit-shared-0002", source="config")
MODEL = "claude-test-1"


class Instance:
    def __init__(self, url: str, name: str) -> None:
        self.store = SharedStore(url, PREFIX, instance=name)
        self.pool = Pool()
        self.quota = QuotaBook()
        self.shared = SharedPool(self.store, self.pool, self.quota)
        self.task: asyncio.Task | None = None

    async def start(self) -> Instance:
        self.task = asyncio.get_running_loop().create_task(self.store.run())
        await until(lambda: self.store.up, "connected")
        return self

    async def stop(self) -> None:
        self.shared.close()
        self.store.stop()
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
        await self.store.aclose()


async def until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.01)


def run(server: RedisServer, body: Callable[[Instance, Instance], Awaitable[None]]) -> None:
    async def main() -> None:
        a = await Instance(server.url, "a").start()
        b = await Instance(server.url, "b").start()
        try:
            await body(a, b)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())


def test_a_429_on_one_instance_rests_the_credential_on_the_other(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(CRED, MODEL, 429, 30.0)
        await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B adopts A's rest")
        rest = b.pool.blocked(CRED, MODEL)
        assert rest.kind == "quota" and rest.reason == "quota exhausted (HTTP 429)"
        assert 28 < rest.until - time.monotonic() <= 30
        # Only that model: the credential serves others on B.
        assert b.pool.blocked(CRED, "claude-test-2") is None
        redis = redis_server.client()
        key = a.shared.rest_key("model", CRED.id, MODEL)
        assert 28_000 < redis.pttl(key) <= 30_000
        value = json.loads(redis.get(key))
        assert value["k"] == "quota" and value["c"] == CRED.id and value["m"] == MODEL
        assert abs(value["e"] - (time.time() + 30)) < 2

        # A success on B clears it on A and in the store.
        b.pool.succeeded(CRED, MODEL)
        await until(lambda: a.pool.blocked(CRED, MODEL) is None, "A drops the rest B cleared")
        await until(lambda: not redis.exists(key), "the key is gone")

    run(redis_server, body)


def test_the_quota_backoff_level_travels_with_the_rest(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(CRED, MODEL, 429)  # no Retry-After: 1 s, then the level goes up
        await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B adopts the rest")
        assert b.pool.blocked(CRED, MODEL).level == 1
        # B's next 429 escalates from A's level: 2 s, not 1 s.
        assert b.pool.failed(CRED, MODEL, 429) == 2.0

    run(redis_server, body)


def test_auth_and_quota_window_rests_are_shared(redis_server):  # noqa: F811
    from auth.quota import QuotaSnapshot, Window

    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(OTHER, MODEL, 401)
        now = time.time()
        snapshot = QuotaSnapshot(now, (Window("5h", 1.0, None, None, now + 120, "rejected"),))
        a.pool.observe_quota(CRED, snapshot)
        await until(lambda: b.pool.blocked(OTHER, "any-model") is not None, "the refused credential rests on B")
        await until(lambda: b.pool.blocked(CRED, "any-model") is not None, "the exhausted window rests on B")
        assert b.pool.blocked(OTHER, "x").kind == "auth"
        assert b.pool.blocked(CRED, "x").reason == "quota window 5h exhausted"

    run(redis_server, body)


def test_a_new_instance_reads_back_the_rests_in_force(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(CRED, MODEL, 503)
        await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B adopts the rest")
        late = await Instance(redis_server.url, "late").start()
        try:
            await until(lambda: late.pool.blocked(CRED, MODEL) is not None, "the late instance reads it back")
            assert late.pool.blocked(CRED, MODEL).reason == "HTTP 503"
        finally:
            await late.stop()

    run(redis_server, body)


def test_after_the_store_lost_its_data_each_instance_pushes_its_rests_again(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(CRED, MODEL, 429, 60.0)
        key = a.shared.rest_key("model", CRED.id, MODEL)
        redis = redis_server.client()
        await until(lambda: redis.exists(key), "the rest is in the store")
        redis_server.stop()
        redis_server.start()  # no persistence: empty
        assert not redis_server.client().exists(key)
        a.shared.pool.failed(OTHER, MODEL, 429, 60.0)  # while the store is away: local only
        await until(lambda: a.store.up and redis_server.client().exists(key), "A pushed its rest", timeout=15)
        await until(
            lambda: b.pool.blocked(OTHER, MODEL) is not None, "B has the rest recorded while away", timeout=15
        )

    run(redis_server, body)


def test_a_rest_cleared_while_the_store_was_away_is_cleared_there_on_return(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.failed(CRED, MODEL, 429, 60.0)
        await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B adopts the rest")
        a.store.lost(ConnectionError("test: cut off"))
        a.pool.succeeded(CRED, MODEL)  # not sent: the store is down for A
        await until(lambda: a.store.up, "A reconnects", timeout=10)
        key = a.shared.rest_key("model", CRED.id, MODEL)
        await until(lambda: not redis_server.client().exists(key), "A's stale rest is deleted")
        assert a.pool.blocked(CRED, MODEL) is None

    run(redis_server, body)


def test_switches_are_shared_and_one_made_while_away_is_not_undone(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        a.pool.disable(CRED.id)
        await until(lambda: b.pool.is_disabled(CRED.id), "B sees the switch")
        b.store.lost(ConnectionError("test: cut off"))
        b.pool.enable(CRED.id)
        await until(lambda: b.store.up, "B reconnects", timeout=10)
        await until(lambda: not a.pool.is_disabled(CRED.id), "A sees the enable B made while away")
        assert not b.pool.is_disabled(CRED.id)
        assert redis_server.client().smembers(a.shared.disabled_key) == set()

    run(redis_server, body)


def test_round_robin_positions_are_one_sequence(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        positions = [await (a if i % 2 else b).shared.position("m") for i in range(6)]
        assert positions == [0, 1, 2, 3, 4, 5]
        b.store.lost(ConnectionError("test: cut off"))
        assert await b.shared.position("m") is None  # the pool's own cursor then serves

    run(redis_server, body)


def test_quota_snapshots_are_shared(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        for used in ("0.40", "0.41", "0.42"):  # a burst of answers: the latest is what travels
            a.quota.observe(CRED.id, {"anthropic-ratelimit-unified-5h-utilization": used})
        await until(lambda: b.quota.get(CRED.id) is not None, "B has A's snapshot")
        assert b.quota.get(CRED.id).windows[0].used == 0.42
        assert 0 < redis_server.client().ttl(a.shared.quota_key(CRED.id)) <= 86400

    run(redis_server, body)


def test_the_heartbeat_lists_every_instance(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        beats = [Heartbeat(i.store, lambda port=port: f"127.0.0.1:{port}") for i, port in ((a, 1), (b, 2))]
        for beat in beats:
            await beat.beat()
        listed = await beats[0].instances()
        assert [(i["instance"], i["address"], i["self"]) for i in listed] == [
            ("a", "127.0.0.1:1", True),
            ("b", "127.0.0.1:2", False),
        ]
        assert 0 < redis_server.client().ttl(beats[1].key("b")) <= 30
        await beats[1].leave()
        assert [i["instance"] for i in await beats[0].instances()] == ["a"]

    run(redis_server, body)


def cut_off(server: RedisServer, instance: Instance) -> None:
    """Close every connection `instance` has to the store, its channel's included."""
    admin = server.client()
    for client in admin.client_list():
        if client["name"] == f"cliproxy-{instance.store.instance}":
            admin.client_kill_filter(_id=client["id"])
    instance.store.lost(ConnectionError("test: cut off"))


async def reconnect(instance: Instance) -> None:
    """Cut `instance` off the store and wait until it has connected and read back again."""
    await until(lambda: instance.store.synchronised, "first read-back")
    before = instance.store.synchronised
    instance.store.lost(ConnectionError("test: cut off"))
    await until(lambda: instance.store.synchronised > before, "read back again", timeout=10)


def test_a_switch_heard_during_the_read_back_is_not_undone_by_it(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        read_back = b.store.client.smembers

        async def older_read_back(key):
            members = await read_back(key)
            # A switches once B's read is done; B's listener hears it before the read's answer
            # is used (two connections: nothing orders them on B's side).
            a.pool.disable(CRED.id)
            await until(lambda: b.pool.is_disabled(CRED.id), "B hears the switch")
            return members

        b.store.client.smembers = older_read_back
        await reconnect(b)
        assert b.pool.is_disabled(CRED.id)
        assert redis_server.client().smembers(a.shared.disabled_key) == {CRED.id.encode()}

    run(redis_server, body)


def test_a_rest_heard_during_the_read_back_keeps_its_owner(redis_server, monkeypatch):  # noqa: F811
    import auth.shared.rests as rests

    read_all = rests._read_all
    instances: dict[str, Instance] = {}

    async def older_read_back(client, pattern):
        a, b = instances["a"], instances["b"]
        found = await read_all(client, pattern)
        if client is b.store.client and ":rest:" in pattern:
            a.pool.failed(CRED, MODEL, 429, 60.0)
            await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B hears A's rest")
        return found

    async def body(a: Instance, b: Instance) -> None:
        instances.update(a=a, b=b)
        await until(lambda: a.store.synchronised, "A's first read-back")
        await until(lambda: b.store.synchronised, "B's first read-back")
        monkeypatch.setattr(rests, "_read_all", older_read_back)
        await reconnect(b)
        # B did not write A's rest back as its own: when A recovers while cut off, its return
        # clears the rest everywhere.
        a.store.lost(ConnectionError("test: cut off"))
        a.pool.succeeded(CRED, MODEL)
        await until(lambda: b.pool.blocked(CRED, MODEL) is None, "B drops the rest A cleared while away", timeout=10)
        assert not redis_server.client().exists(a.shared.rest_key("model", CRED.id, MODEL))

    run(redis_server, body)


async def rested_on_both(a: Instance, b: Instance, seconds: float) -> int:
    """A 429 on A, adopted by B once B has read back; returns B's read-backs so far."""
    a.pool.failed(CRED, MODEL, 429, seconds)
    await until(lambda: b.pool.blocked(CRED, MODEL) is not None, "B adopts A's rest")
    await until(lambda: b.store.synchronised, "B's first read-back")
    return b.store.synchronised


def test_a_success_seen_while_cut_off_ends_another_instances_rest_on_return(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        before = await rested_on_both(a, b, 60.0)
        cut_off(redis_server, b)
        b.pool.succeeded(CRED, MODEL)  # the credential answered B: its rest is over
        await until(lambda: b.store.synchronised > before, "B reads back again", timeout=10)
        await until(lambda: a.pool.blocked(CRED, MODEL) is None, "A drops its rest")
        assert b.pool.blocked(CRED, MODEL) is None
        assert not redis_server.client().exists(a.shared.rest_key("model", CRED.id, MODEL))

    run(redis_server, body)


def test_a_rest_written_after_that_success_is_kept(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        before = await rested_on_both(a, b, 20.0)
        back = asyncio.Event()
        ping = b.store.ping

        async def held_off() -> str | None:
            await back.wait()
            return await ping()

        b.store.ping = held_off
        cut_off(redis_server, b)  # B hears nothing until it is back
        b.pool.succeeded(CRED, MODEL)
        await asyncio.sleep(0.05)
        a.pool.failed(CRED, MODEL, 429, 40.0)  # a newer 429 on A, written while B is away
        key = a.shared.rest_key("model", CRED.id, MODEL)
        await until(lambda: json.loads(redis_server.client().get(key))["e"] > time.time() + 30, "A's new rest")
        back.set()
        await until(lambda: b.store.synchronised > before, "B reads back again", timeout=10)
        rest = b.pool.blocked(CRED, MODEL)
        assert rest is not None and rest.until - time.monotonic() > 30
        assert a.pool.blocked(CRED, MODEL) is not None

    run(redis_server, body)
