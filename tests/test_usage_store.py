"""routing/usage.py: records queued, written in batches, read back in totals, kept across restarts."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from routing import usage
from routing.usage import UsageRecord, UsageStore, open_readonly


def rec(at: float, **kw) -> UsageRecord:
    fields = dict(
        time=at, client_key="key-1", client_api="openai-chat", provider="claude", credential="claude-api-key[1] (…AAAA)",
        model="claude-test", upstream_model="claude-test", status=200, attempts=1, latency_ms=10.0, first_byte_ms=4.0,
        input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1, error=None,
    )
    fields.update(kw)
    return UsageRecord(**fields)


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    s = UsageStore(":memory:" if request.param == "memory" else tmp_path / "usage.db")
    yield s
    s.close()


def test_totals_and_groups(store):
    now = time.time()
    store.record(rec(now - 5, model="a", latency_ms=10))
    store.record(rec(now - 4, model="a", latency_ms=30, status=429, error="rate_limited", input_tokens=None,
                     output_tokens=None, cached_tokens=None, reasoning_tokens=None, first_byte_ms=None))
    store.record(rec(now - 3, model="b", provider="gemini", client_key="key-2"))
    store.record(rec(now - 7200, model="old"))
    store.flush()
    [total] = store.query(now - 60)
    assert total == {
        "requests": 3, "errors": 1, "input_tokens": 20, "output_tokens": 10, "cached_tokens": 4,
        "reasoning_tokens": 2, "avg_latency_ms": pytest.approx(50 / 3), "avg_first_byte_ms": 4.0,
    }
    by_model = {row["key"]: row for row in store.query(now - 60, by="model")}
    assert set(by_model) == {"a", "b"}
    assert (by_model["a"]["requests"], by_model["a"]["errors"], by_model["a"]["avg_latency_ms"]) == (2, 1, 20.0)
    assert {r["key"] for r in store.query(now - 60, by="client-key")} == {"key-1", "key-2"}
    assert {r["key"] for r in store.query(now - 60, by="provider")} == {"claude", "gemini"}
    assert store.query(now - 86400, by="credential")[0]["requests"] == 4
    assert store.query(now + 60) == []


def test_buckets(store):
    base = float(int(time.time()) // 3600 * 3600 - 3600)  # a multiple of 120, within retention
    for offset in (0, 10, 59, 60, 125):
        store.record(rec(base + offset, model="m" if offset < 100 else "n"))
    store.flush()
    rows = store.query(base, bucket_seconds=60)
    assert [(r["bucket"], r["requests"]) for r in rows] == [(base, 3), (base + 60, 1), (base + 120, 1)]
    rows = store.query(base, by="model", bucket_seconds=120)
    assert [(r["bucket"], r["key"], r["requests"]) for r in rows] == [(base, "m", 4), (base + 120, "n", 1)]


def test_bad_arguments(store):
    with pytest.raises(ValueError):
        store.query(0, by="secret")
    with pytest.raises(ValueError):
        store.query(0, bucket_seconds=0)


def test_recent_errors_newest_first(store):
    now = time.time()
    for i, error in enumerate([None, "unreachable", "rate_limited", None, "cut_off"]):
        store.record(rec(now + i, error=error, status=200 if error in (None, "cut_off") else 502))
    store.flush()
    errors = store.recent_errors(2)
    assert [e["error"] for e in errors] == ["cut_off", "rate_limited"]
    assert errors[0]["credential"] == "claude-api-key[1] (…AAAA)"


def test_record_never_waits_for_the_writer(tmp_path, monkeypatch):
    s = UsageStore(tmp_path / "usage.db")
    gate = threading.Event()
    original = s._write_queued

    def slow(db):
        gate.wait(5)
        original(db)

    monkeypatch.setattr(s, "_write_queued", slow)
    started = time.perf_counter()
    for i in range(2000):
        s.record(rec(time.time()))
    assert time.perf_counter() - started < 1.0
    gate.set()
    s.flush()
    assert s.query(0)[0]["requests"] == 2000
    s.close()


def test_rows_survive_a_restart_and_are_readable_read_only(tmp_path):
    path = tmp_path / "usage.db"
    s = UsageStore(path)
    s.record(rec(time.time()))
    s.flush()
    # While the writer is open (WAL files beside it), a read-only reader sees the row.
    assert usage.query(open_readonly(path), 0)[0]["requests"] == 1
    s.close()
    again = UsageStore(path)
    again.record(rec(time.time()))
    again.flush()
    assert again.query(0)[0]["requests"] == 2
    again.close()
    with pytest.raises(sqlite3.Error):
        open_readonly(tmp_path / "missing.db")


def test_old_rows_are_pruned(tmp_path):
    s = UsageStore(tmp_path / "usage.db", retention_days=1)
    s.record(rec(time.time() - 3 * 86400))
    s.record(rec(time.time()))
    s.flush()
    # The writer prunes on its own once the batch is in (and then hourly): no second writer here,
    # which would race it for the connection.
    deadline = time.monotonic() + 10
    while s.query(0)[0]["requests"] != 1:
        assert time.monotonic() < deadline, "the old row was not pruned"
        time.sleep(0.02)
    s.close()


def test_close_writes_what_is_queued_and_later_records_are_ignored(tmp_path):
    path = tmp_path / "usage.db"
    s = UsageStore(path)
    for _ in range(3):
        s.record(rec(time.time()))
    s.close()
    s.close()
    s.record(rec(time.time()))
    assert usage.query(open_readonly(path), 0)[0]["requests"] == 3
