"""routing/shared_usage.py against a real redis-server: two instances' writers feeding one capped
stream, the view every instance queries, and the synchronous read `cliproxy usage` does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import astuple

from auth.shared.store import SharedStore
from routing import shared_usage, usage
from routing.shared_usage import UsageStream, UsageView
from routing.usage import UsageRecord
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - a fixture
from tests.test_shared_pool import until

PREFIX = "cliproxy-test:"
KEY = PREFIX + "usage"


def row(model: str = "m-1", *, at: float | None = None, error: str | None = None, tokens: int | None = 7) -> UsageRecord:
    return UsageRecord(
        time=time.time() if at is None else at, client_key="key-1", client_api="anthropic", provider="claude",
        credential="claude-api-key (…0001)", model=model, upstream_model=model, status=429 if error else 200,
        attempts=1, latency_ms=12.5, first_byte_ms=None if error else 3.0, input_tokens=tokens,
        output_tokens=tokens, cached_tokens=None, reasoning_tokens=0, error=error,
    )


class Instance:
    def __init__(self, url: str, name: str, maxlen: int = shared_usage.STREAM_MAXLEN) -> None:
        self.store = SharedStore(url, PREFIX, instance=name)
        self.stream = UsageStream(self.store, maxlen)
        self.view = UsageView(self.store)
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> Instance:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.store.run()), loop.create_task(self.stream.run())]
        await until(lambda: self.store.up, "connected")
        return self

    async def stop(self) -> None:
        self.store.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.wait(self.tasks)
        self.stream.close()
        await self.store.aclose()


async def refreshed(view: UsageView, timeout: float = 5.0) -> bool:
    """`view.refresh()` once the store answers in time: on a loaded machine a page of entries may
    take longer than the store's operation timeout, which marks it down until it reconnects."""
    deadline = time.monotonic() + timeout
    while not await view.refresh():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def run(server: RedisServer, body: Callable[..., Awaitable[None]], n: int = 2, **kw) -> None:
    async def main() -> None:
        instances = [await Instance(server.url, f"i{i}", **kw).start() for i in range(n)]
        try:
            await body(*instances)
        finally:
            for instance in instances:
                await instance.stop()

    asyncio.run(main())


def test_rows_of_two_instances_are_one_total_on_either(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        for _ in range(5):
            a.stream.record(row("m-1"))
        for _ in range(3):
            b.stream.record(row("m-2", tokens=None))
        b.stream.record(row("m-2", error="rate_limited", tokens=None))
        await until(lambda: redis_server.client().xlen(KEY) == 9, "9 rows in the stream")
        assert await refreshed(a.view) and await refreshed(b.view)
        for view in (a.view, b.view):
            [total] = view.query(0)
            assert (total["requests"], total["errors"], total["input_tokens"]) == (9, 1, 35)
            assert {r["key"]: r["requests"] for r in view.query(0, "model")} == {"m-1": 5, "m-2": 4}
            assert sorted(view.instances(0)) == ["i0", "i1"]
            [error] = view.recent_errors(10)
            assert error["instance"] == "i1" and error["error"] == "rate_limited" and error["first_byte_ms"] is None
        # Only what is new is read again, and added once.
        a.stream.record(row("m-1"))
        await until(lambda: redis_server.client().xlen(KEY) == 10, "the 10th row")
        assert await refreshed(b.view)
        assert b.view.query(0)[0]["requests"] == 10
        # The stream holds the local table's columns, and which instance sent the row.
        [(_, fields)] = redis_server.client().xrange(KEY, count=1)
        assert list(fields) == [b"row"]
        assert json.loads(fields[b"row"])[len(usage.COLUMNS):] == ["i0", 0]

    run(redis_server, body)


def test_a_row_decodes_to_what_was_recorded():
    record = row("m-1", at=1234.5, error="rate_limited", tokens=None)
    entry = {k.encode(): v.encode() for k, v in shared_usage.encode(record, "i0", 3).items()}
    assert shared_usage.decode((b"5-1", entry)) == (*astuple(record), "i0", 3, 5, 1)
    # Entries this version cannot read are skipped, not trusted.
    good = json.loads(entry[b"row"])
    for bad in (
        {b"row": b"not json"},
        {b"other": entry[b"row"]},
        {b"row": json.dumps(good[:-1]).encode()},  # a column short
        {b"row": json.dumps(["x", *good[1:]]).encode()},  # a time that is no number
        {b"row": json.dumps([*good[:7], None, *good[8:]]).encode()},  # a status that is not there
        {b"row": json.dumps([*good[:-2], "i" * 9000, 3]).encode()},  # too long
    ):
        assert shared_usage.decode((b"5-2", bad)) is None, bad
    db = shared_usage.database()
    assert shared_usage.load(db, [(b"5-1", entry), (b"5-2", {b"row": b"[]"})]) == 1
    assert usage.query(db, 0)[0]["requests"] == 1


def test_a_batch_sent_twice_counts_once_and_the_cap_trims(redis_server):  # noqa: F811
    async def body(a: Instance) -> None:
        client = redis_server.client()
        entry = shared_usage.encode(row(), "i0", 0)
        client.xadd(KEY, entry)
        client.xadd(KEY, entry)  # a pipeline that failed half-way and was sent again
        assert await refreshed(a.view)
        assert a.view.query(0)[0]["requests"] == 1
        client.delete(KEY)
        for _ in range(3000):
            a.stream.record(row())
        await until(lambda: a.stream.pending == 0, "3000 rows sent")
        length = client.xlen(KEY)
        assert 1000 <= length < 3000  # approximate trimming: whole blocks of entries go
        assert await refreshed(a.view)
        assert a.view.query(0)[0]["requests"] == length

    run(redis_server, body, n=1, maxlen=1000)


def test_trimmed_and_lost_entries_leave_the_view(redis_server):  # noqa: F811
    async def body(a: Instance) -> None:
        client = redis_server.client()
        for _ in range(10):
            a.stream.record(row())
        await until(lambda: client.xlen(KEY) == 10, "10 rows")
        assert await refreshed(a.view)
        client.xtrim(KEY, maxlen=4, approximate=False)
        assert await refreshed(a.view)
        assert a.view.query(0)[0]["requests"] == 4
        client.flushall()  # a store restarted without its data
        assert await refreshed(a.view)
        assert a.view.query(0) == []
        a.stream.record(row())
        await until(lambda: client.xlen(KEY) == 1, "a new row")
        assert await refreshed(a.view)
        assert a.view.query(0)[0]["requests"] == 1

    run(redis_server, body, n=1)


def test_rows_wait_while_the_store_is_down_and_go_when_it_is_back(redis_server):  # noqa: F811
    async def body(a: Instance) -> None:
        a.stream.record(row())
        await until(lambda: a.stream.pending == 0, "the first row sent")
        redis_server.stop()
        for _ in range(4):
            a.stream.record(row())  # never raises, never waits
        assert not await a.stream.flush()
        assert a.stream.pending == 4
        assert not await a.view.refresh()  # the caller answers from its own database
        redis_server.start()  # empty: the first row went with the old process
        await until(lambda: a.store.up and a.stream.pending == 0, "sent on reconnection", timeout=10)
        assert redis_server.client().xlen(KEY) == 4
        assert await refreshed(a.view)
        assert a.view.query(0)[0]["requests"] == 4

    run(redis_server, body, n=1)


def test_cliproxy_usage_reads_the_asked_window_synchronously(redis_server):  # noqa: F811
    async def body(a: Instance, b: Instance) -> None:
        now = time.time()
        a.stream.record(row(at=now - 7200))  # before the window
        a.stream.record(row(at=now - 60))
        b.stream.record(row(at=now - 30))
        await until(lambda: redis_server.client().xlen(KEY) == 3, "3 rows")

    run(redis_server, body)
    db = shared_usage.read_window(redis_server.client(), KEY, time.time() - 3600)
    assert usage.query(db, time.time() - 3600)[0]["requests"] == 2
