"""Usage shared through the state store: three real mitmdump instances on one real redis-server,
each writing its rows to the shared stream besides its own SQLite, each answering usage queries
(management API, status page, `cliproxy usage`) with every instance's rows while the store is up,
and with its own rows, saying so, while it is not."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Proxy
from tests.fakes.upstream import FakeUpstream
from tests.redis_server import redis_server  # noqa: F401 - a fixture
from tests.test_e2e_shared_pool import (
    CLIENT_KEY,
    KEYS,
    SECRET,
    ask,
    assert_no_secret_in_store,
    management,
    shared_config,
    start_instances,
)
from tests.test_status_page import chromium, run_chromium
from tests.waiting import wait_until


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def usage(proxy: Proxy, query: str = "") -> dict:
    r = management(proxy, "GET", "/usage" + query)
    assert r.status_code == 200, r.text
    return r.json()


def total(body: dict) -> int:
    return sum(row["requests"] for row in body["rows"])


def cliproxy_usage(proxy: Proxy, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing.cli", "usage", "--config", str(proxy.config_path), *args],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )


def test_usage_queries_on_any_instance_total_every_instances_rows(fake, make_proxy, redis_server, tmp_path):  # noqa: F811
    proxies = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    for i in range(12):
        assert ask(proxies[i % 3], "claude-test-1" if i % 2 else "claude-test-2").status_code == 200
    fake.fail(KEYS[0], 400, times=1)
    fake.fail(KEYS[1], 400, times=1)
    assert ask(proxies[1]).status_code == 400  # one error, seen by B

    for proxy in proxies:
        wait_until(lambda p=proxy: total(usage(p)) == 13, timeout=10, what="13 rows")
        body = usage(proxy)
        assert body["source"] == "shared"
        assert len(body["instances"]) == 3
        by_model = {r["key"]: r["requests"] for r in usage(proxy, "?by=model")["rows"]}
        assert by_model == {"claude-test-1": 7, "claude-test-2": 6}
        errors = management(proxy, "GET", "/errors").json()
        assert errors["source"] == "shared" and len(errors["errors"]) == 1
        assert errors["errors"][0]["status"] == 400
    # `cliproxy usage` with any instance's config reads the shared totals.
    for proxy in proxies:
        result = cliproxy_usage(proxy, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["source"] == "shared" and report["store"] == redis_server.url
        assert report["total"]["requests"] == 13 and report["total"]["errors"] == 1
    table = cliproxy_usage(proxies[0], "--by", "model").stdout.splitlines()
    assert table[-1] == f"source: shared, every instance's rows in the state store {redis_server.url}"
    assert table[-2].split()[:3] == ["total", "13", "1"]

    # The stream holds labels, never a key.
    stream = redis_server.client().xrange("cliproxy:usage")
    assert len(stream) == 13
    assert {json.loads(fields[b"row"])[1] for _, fields in stream} == {"key-1"}  # client_key
    assert assert_no_secret_in_store(redis_server, [CLIENT_KEY, SECRET, *KEYS]) > 0

    # The status page says where its usage comes from.
    chromium()
    dom = run_chromium(f"{proxies[2].base_url}/status?key={SECRET}", tmp_path / "profile", "--dump-dom")
    assert 'data-source="shared"' in dom
    assert sorted(int(n) for n in re.findall(r'class="model" data-model="[^"]+" data-requests="(\d+)"', dom)) == [6, 7]


def test_with_the_store_stopped_usage_answers_from_each_instance_and_says_so(fake, make_proxy, redis_server):  # noqa: F811
    a, b, c = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    for proxy, n in ((a, 3), (b, 2), (c, 1)):
        for _ in range(n):
            assert ask(proxy).status_code == 200
    wait_until(lambda: total(usage(c)) == 6, timeout=10, what="6 shared rows")

    redis_server.stop()
    for proxy in (a, b, c, a, b, c):
        assert ask(proxy).status_code == 200
    for proxy, own in ((a, 5), (b, 4), (c, 3)):
        wait_until(lambda p=proxy, n=own: total(usage(p)) == n, timeout=10, what="local rows")
        body = usage(proxy)
        assert body["source"] == "local" and "instances" not in body
        assert management(proxy, "GET", "/errors").json()["source"] == "local"
    result = cliproxy_usage(a, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["source"] == "local"
    assert "unreachable" in report["note"] and report["total"]["requests"] == 5

    # Back, empty: each instance sends the rows the store missed.
    redis_server.start()
    wait_until(
        lambda: all((u := usage(p))["source"] == "shared" and total(u) == 6 for p in (a, b, c)),
        timeout=20,
        what="the rows made while the store was away, shared",
    )
    assert assert_no_secret_in_store(redis_server, [CLIENT_KEY, SECRET, *KEYS]) > 0
