"""Usage rows shared through the state store: one capped stream (`<prefix>usage`) that every
instance appends its rows to, besides its own SQLite, and that any instance's usage queries read.

Writing stays off the request path: `record` queues the row, and one background writer sends
the queue in batches (one pipeline of XADDs, the stream trimmed to about `STREAM_MAXLEN` rows).
While the store is down the queue keeps the latest `MAX_PENDING` rows, sent when it is back;
the rows are in SQLite meanwhile either way. A batch that failed half-way is sent again whole:
each row carries its instance and a sequence number, and readers keep one row per pair.

Reading reuses the SQLite queries of `routing.usage`: the stream's rows are loaded into an
in-memory database with the same `requests` table. An instance keeps that copy (`UsageView`)
and reads only the stream's new entries on each query; `cliproxy usage` loads the asked window.

Like SQLite's rows, the stream's hold no secret: the client key's label and the credential's.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import astuple, fields
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from auth.shared.store import CONNECT_TIMEOUT, SharedStore
from routing import usage
from routing.usage import COLUMNS, UsageRecord

logger = logging.getLogger("cliproxy")

KEY = "usage"  # under the store's prefix
# About this many rows stay in the stream (trimmed approximately, which Redis does cheaply).
STREAM_MAXLEN = 100_000
BATCH_INTERVAL = 0.2
BATCH_SIZE = 500
# Rows kept for the stream while the store is down; past this the oldest are left to SQLite.
MAX_PENDING = 10_000
# Entries read per round trip by a query (in a worker thread), and how long one may take.
PAGE = 2000
READ_TIMEOUT = 5.0
# A row's time is when its request arrived, its entry id when the store took it: later, by the
# writer's delay, an outage's backlog, or a clock that differs from the store's.
CLOCK_SLACK = 300.0
# An entry written by another instance is not trusted blindly.
_MAX_ENTRY = 8192

FIELD = "row"
_FIELD_BYTES = FIELD.encode()
_NULLABLE = frozenset(f.name for f in fields(UsageRecord) if "None" in str(f.type))
# Each column's JSON type (an int is a fine float: 12 ms may come back as 12).
_KINDS: tuple[tuple[str, type | tuple[type, ...]], ...] = tuple(
    (f.name, (int, float) if "float" in str(f.type) else int if "int" in str(f.type) else str)
    for f in fields(UsageRecord)
)
_EXTRA_SCHEMA = """
ALTER TABLE requests ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN entry_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN entry_seq INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX requests_once ON requests (instance, seq);
CREATE INDEX requests_by_entry ON requests (entry_ms, entry_seq);
"""
_ALL = (*COLUMNS, "instance", "seq", "entry_ms", "entry_seq")
_INSERT = f"INSERT OR IGNORE INTO requests ({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))})"
Entry = tuple[Any, dict[Any, Any]]


def encode(record: UsageRecord, instance: str, seq: int) -> dict[str, str]:
    """The stream entry of `record`: one field, the row as a JSON array in `COLUMNS` order, then
    the instance and its sequence number. One field rather than one per column: redis-py parses
    replies in Python, per field, and a query may read the whole stream."""
    return {FIELD: json.dumps([*astuple(record), instance, seq], separators=(",", ":"))}


def decode(entry: Entry) -> tuple | None:
    """A row for the `requests` table (with instance, seq and the entry id), or None for an
    entry this version cannot read."""
    entry_id, raw = entry
    try:
        ms, seq = decode_id(entry_id)
        text = raw.get(_FIELD_BYTES, raw.get(FIELD))
        if text is None or len(text) > _MAX_ENTRY:
            return None
        values = json.loads(text)
        if not isinstance(values, list) or len(values) != len(_KINDS) + 2:
            return None
        for value, (name, kind) in zip(values, _KINDS):
            if value is None:
                if name not in _NULLABLE:
                    return None
            elif not isinstance(value, kind) or isinstance(value, bool):
                return None
        if not isinstance(values[-2], str) or not isinstance(values[-1], int):
            return None
        return (*values, ms, seq)
    except (ValueError, TypeError, UnicodeDecodeError, AttributeError):
        return None


def decode_id(entry_id: Any) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def database() -> sqlite3.Connection:
    """An in-memory database with the usage table (and the stream's own columns)."""
    db = sqlite3.connect(usage.MEMORY, check_same_thread=False, isolation_level=None)
    db.executescript(usage.SCHEMA)
    db.executescript(_EXTRA_SCHEMA)
    return db


def load(db: sqlite3.Connection, entries: Iterable[Entry]) -> int:
    """Insert the stream `entries` into `db`; returns how many were unreadable."""
    rows, unreadable = [], 0
    for entry in entries:
        row = decode(entry)
        if row is None:
            unreadable += 1
        else:
            rows.append(row)
    db.execute("BEGIN")
    db.executemany(_INSERT, rows)
    db.execute("COMMIT")
    return unreadable


def recent_errors(db: sqlite3.Connection, limit: int) -> list[dict]:
    return usage.recent_errors(db, limit, columns=(*COLUMNS, "instance"))


class UsageStream:
    """This instance's writer to the stream."""

    def __init__(self, store: SharedStore, maxlen: int = STREAM_MAXLEN) -> None:
        self.store = store
        self.key = store.key(KEY)
        self.maxlen = maxlen
        self._pending: collections.deque[tuple[int, UsageRecord]] = collections.deque()
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._left_out = 0
        store.on_connect.append(self._reconnected)

    def record(self, record: UsageRecord) -> None:
        """Queue `record` for the stream: never blocks, never raises."""
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self._left_out += 1
        self._pending.append((next(self._seq), record))
        if len(self._pending) >= BATCH_SIZE:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _reconnected(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(BATCH_INTERVAL):
                    await self._wake.wait()
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Send what is queued; False when the store is down (the rows wait for it)."""
        while self._pending:
            batch = list(itertools.islice(self._pending, BATCH_SIZE))
            entries = [encode(record, self.store.instance, seq) for seq, record in batch]

            async def write(client) -> bool:
                pipe = client.pipeline(transaction=False)
                for entry in entries:
                    pipe.xadd(self.key, entry, maxlen=self.maxlen, approximate=True)
                await pipe.execute()
                return True

            if not await self.store.call(write, False):
                return False
            for _ in batch:
                self._pending.popleft()
        if self._left_out:
            logger.warning(
                f"cliproxy: usage: {self._left_out} row(s) kept in this instance's database only, "
                "the state store was away too long"
            )
            self._left_out = 0
        return True

    def close(self) -> None:
        if self._reconnected in self.store.on_connect:
            self.store.on_connect.remove(self._reconnected)


class UsageView:
    """The stream as one in-memory usage database, brought up to date before each query.

    Read in a worker thread through a synchronous client of its own: redis-py parses replies in
    Python (about 40 ms per 500 entries on a busy machine; a first read of a full stream takes
    seconds), which must not hold the event loop that serves requests."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store
        self.key = store.key(KEY)
        self._db = database()
        self._lock = threading.Lock()  # the database, between the loop and worker threads
        self._reading: asyncio.Lock | None = None
        self._last: tuple[int, int] | None = None  # the latest entry id read
        self._client: redis.Redis | None = None

    async def refresh(self) -> bool:
        """Read the stream's new entries; False when the store cannot be read now (then the
        caller answers from the local database)."""
        if not self.store.up:
            return False
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> bool:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.store.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=READ_TIMEOUT,
                retry=Retry(NoBackoff(), 0), client_name=f"cliproxy-{self.store.instance}-usage",
            )
        try:
            first = self._client.xrange(self.key, "-", "+", count=1)
            # Entries trimmed off the stream (or lost with a store that restarted) leave the copy.
            oldest = decode_id(first[0][0]) if first else None
            self._forget_before(oldest)
            if oldest is None:
                self._last = None
            while True:
                start = "-" if self._last is None else f"{self._last[0]}-{self._last[1] + 1}"
                page = self._client.xrange(self.key, start, "+", count=PAGE)
                if page:
                    self._last = decode_id(page[-1][0])
                    with self._lock:
                        load(self._db, page)
                if len(page) < PAGE:
                    return True
        except (RedisError, OSError, ValueError):
            return False

    def _forget_before(self, oldest: tuple[int, int] | None) -> None:
        with self._lock:
            if oldest is None:
                self._db.execute("DELETE FROM requests")
            else:
                self._db.execute(
                    "DELETE FROM requests WHERE entry_ms < ? OR (entry_ms = ? AND entry_seq < ?)",
                    (oldest[0], oldest[0], oldest[1]),
                )

    def query(self, since: float, by: str | None = None, bucket_seconds: float | None = None) -> list[dict]:
        with self._lock:
            return usage.query(self._db, since, by, bucket_seconds)

    def recent_errors(self, limit: int = 50) -> list[dict]:
        with self._lock:
            return recent_errors(self._db, limit)

    def instances(self, since: float) -> list[str]:
        """The instances with rows since `since`."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT instance FROM requests WHERE time >= ?", (since,))]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def read_window(client, key: str, since: float) -> sqlite3.Connection:
    """The stream's rows from `since` on (and a little before, for clocks), read with a
    synchronous redis client into an in-memory usage database (`cliproxy usage`). Raises the
    client's errors."""
    db = database()
    start = f"{max(0, int((since - CLOCK_SLACK) * 1000))}-0"
    while True:
        page = client.xrange(key, start, "+", count=PAGE)
        load(db, page)
        if len(page) < PAGE:
            return db
        ms, seq = decode_id(page[-1][0])
        start = f"{ms}-{seq + 1}"
