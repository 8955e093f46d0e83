"""Usage kept on disk: one row per client request served through the pool, in SQLite.

The proxy's event loop only appends to a queue; one writer thread inserts in batches (every
200 ms, or at once when 500 rows wait) on its own connection. The file is in WAL mode with
`synchronous=NORMAL`: every committed batch survives a crash of the proxy (kill -9 included);
what was still queued (at most the last 200 ms) is lost with it. Readers (the management API,
`cliproxy usage`) use connections of their own and never wait for the writer.

No secret is stored: `client_key` is a label for the client's key (`key-1`, by position in
`api-keys`), `credential` the credential's label.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path

logger = logging.getLogger("cliproxy")

MEMORY = ":memory:"
BATCH_INTERVAL = 0.2
BATCH_SIZE = 500
PRUNE_INTERVAL = 3600.0
# Past this many rows waiting (the disk is stuck), new ones are counted and dropped, not queued.
MAX_QUEUED = 100_000


@dataclass(slots=True)
class UsageRecord:
    time: float  # epoch seconds the client's request arrived
    client_key: str  # a label, never the key
    client_api: str  # the API the client spoke (a translators Format value)
    provider: str
    credential: str  # the credential's label
    model: str  # as the client asked
    upstream_model: str  # as the upstream was asked
    status: int
    attempts: int
    latency_ms: float
    first_byte_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    error: str | None  # rate_limited, unreachable, upstream_4xx, cut_off, ...; None on success


COLUMNS = tuple(f.name for f in fields(UsageRecord))
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    time REAL NOT NULL,
    client_key TEXT NOT NULL,
    client_api TEXT NOT NULL,
    provider TEXT NOT NULL,
    credential TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    status INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    first_byte_ms REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_tokens INTEGER,
    reasoning_tokens INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (time);
"""
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
GROUPS = {"model": "model", "credential": "credential", "client-key": "client_key", "provider": "provider"}


class UsageStore:
    def __init__(self, path: str | Path, retention_days: float = 30) -> None:
        """Opens (or creates) the database at `path` (":memory:": one that lives as long as
        the store). Raises sqlite3.Error or OSError when the file cannot be used."""
        self.path = str(path)
        self.retention_days = retention_days
        self._read_lock = threading.Lock()
        if self.path == MEMORY:
            # One connection, taken in turns: an in-memory database is the connection's own.
            self._writer = self._reader = sqlite3.connect(MEMORY, check_same_thread=False, isolation_level=None)
            self._write_lock: threading.Lock | contextlib.nullcontext = self._read_lock
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            uri = Path(self.path).resolve().as_uri()
            self._writer = self._connect(uri)
            self._reader = self._connect(uri)
            self._write_lock = contextlib.nullcontext()
        self._writer.executescript(SCHEMA)
        self._queue: collections.deque[UsageRecord] = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._queued = 0
        self._written = 0
        self._dropped = 0
        self._closing = False
        self._closed = False
        self._pruned_at = 0.0
        self._thread = threading.Thread(target=self._run, name="cliproxy-usage-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def _connect(uri: str) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=5)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- writing --------------------------------------------------------------------------------

    def record(self, rec: UsageRecord) -> None:
        """Queue `rec` for the writer: never blocks."""
        if self._closing:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._dropped += 1
            return
        self._queue.append(rec)
        self._queued += 1
        if len(self._queue) >= BATCH_SIZE:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every record queued so far is written."""
        target = self._queued
        self._wake.set()
        with self._done:
            self._done.wait_for(lambda: self._written >= target or not self._thread.is_alive(), timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._closed = True
        with self._read_lock:
            self._reader.close()

    def _run(self) -> None:
        db = self._writer
        try:
            while True:
                self._wake.wait(BATCH_INTERVAL)
                self._wake.clear()
                self._write_queued(db)
                if self._closing and not self._queue:
                    break
                if self.retention_days > 0 and time.monotonic() - self._pruned_at >= PRUNE_INTERVAL:
                    self._prune(db)
        finally:
            if self._dropped:
                logger.warning(f"cliproxy: usage: {self._dropped} record(s) dropped, the database could not keep up")
            if db is not self._reader:
                db.close()
            with self._done:
                self._done.notify_all()

    def _write_queued(self, db: sqlite3.Connection) -> None:
        while self._queue:
            batch = []
            while self._queue and len(batch) < BATCH_SIZE * 10:
                batch.append(astuple(self._queue.popleft()))
            try:
                with self._write_lock, _transaction(db):  # one transaction per batch
                    db.executemany(_INSERT, batch)
            except sqlite3.Error as e:
                logger.warning(f"cliproxy: usage: {len(batch)} record(s) not written to {self.path}: {e}")
            with self._done:
                self._written += len(batch)
                self._done.notify_all()

    def _prune(self, db: sqlite3.Connection) -> None:
        self._pruned_at = time.monotonic()
        try:
            with self._write_lock, _transaction(db):
                db.execute("DELETE FROM requests WHERE time < ?", (time.time() - self.retention_days * 86400,))
        except sqlite3.Error as e:
            logger.warning(f"cliproxy: usage: pruning {self.path} failed: {e}")

    # -- reading --------------------------------------------------------------------------------

    def query(self, since: float, by: str | None = None, bucket_seconds: float | None = None) -> list[dict]:
        """Totals of the requests since `since` (epoch seconds); see `query`."""
        with self._read_lock:
            return query(self._reader, since, by, bucket_seconds)

    def recent_errors(self, limit: int = 50) -> list[dict]:
        with self._read_lock:
            return recent_errors(self._reader, limit)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # The connections are in autocommit mode: a batch is one transaction only when told so.
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a usage database a proxy may be writing (`cliproxy usage`).
    Raises sqlite3.Error when there is none."""
    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
    db.execute("SELECT 1 FROM requests LIMIT 1")  # "no such table" for a file that is not one
    return db


def query(db: sqlite3.Connection, since: float, by: str | None = None, bucket_seconds: float | None = None) -> list[dict]:
    """One row per `by` value (model, credential, client-key, provider; None: one row in
    all), and with `bucket_seconds` per time bucket too, oldest first. Each row has `key` (the
    `by` value) and `bucket` (the bucket's start, epoch seconds) when asked for, `requests`,
    `errors`, `input_tokens`, `output_tokens`, `cached_tokens`, `reasoning_tokens` (sums; rows
    whose upstream reported none count 0), `avg_latency_ms` and `avg_first_byte_ms`."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}, not {by!r}")
    if bucket_seconds is not None and not bucket_seconds > 0:
        raise ValueError("bucket_seconds must be positive")
    keys, groups, params = [], [], []
    if bucket_seconds is not None:
        keys.append("CAST(time / ? AS INTEGER) * ? AS bucket")
        groups.append("bucket")
        params += [bucket_seconds, bucket_seconds]
    if by is not None:
        keys.append(f"{GROUPS[by]} AS key")
        groups.append("key")
    select = ", ".join(
        [
            *keys,
            "COUNT(*) AS requests",
            "SUM(error IS NOT NULL) AS errors",
            "COALESCE(SUM(input_tokens), 0) AS input_tokens",
            "COALESCE(SUM(output_tokens), 0) AS output_tokens",
            "COALESCE(SUM(cached_tokens), 0) AS cached_tokens",
            "COALESCE(SUM(reasoning_tokens), 0) AS reasoning_tokens",
            "AVG(latency_ms) AS avg_latency_ms",
            "AVG(first_byte_ms) AS avg_first_byte_ms",
        ]
    )
    sql = f"SELECT {select} FROM requests WHERE time >= ?"
    if groups:
        sql += f" GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}"
    cursor = db.execute(sql, (*params, since))
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor]
    return [row for row in rows if row["requests"]]  # no request, no row (SQL's one empty total)


def recent_errors(db: sqlite3.Connection, limit: int = 50, columns: tuple[str, ...] = COLUMNS) -> list[dict]:
    """The latest failed requests, newest first, with `columns` (every column of the table)."""
    cursor = db.execute(
        f"SELECT {', '.join(columns)} FROM requests WHERE error IS NOT NULL ORDER BY time DESC LIMIT ?",
        (max(0, int(limit)),),
    )
    return [dict(zip(columns, row)) for row in cursor]
