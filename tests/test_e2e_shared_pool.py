"""Several proxies, one pool: three real mitmdump instances sharing one real redis-server, a
fake Anthropic upstream counting requests per credential."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import Proxy, vendor_overrides
from tests.fakes.upstream import FakeUpstream
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - a fixture
from tests.test_status_page import chromium, run_chromium
from tests.waiting import wait_until

CLIENT_KEY = "shared-e2e-client-key-0123"
SECRET = "shared-e2e-mgmt-secret-0123456789"
KEYS = [f"sk-ant-shared-pool-key-{c * 4}" for c in "ABCD"]
MODEL = "claude-test-1"
API = "/v0/management"


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def start_instances(make_proxy, n: int, config: dict) -> list[Proxy]:
    """`n` proxies with the same config on one state store (each its own port and auth dir)."""
    proxies = [make_proxy(config, start=False) for _ in range(n)]
    for proxy in proxies:
        proxy.start(wait=False)
    for proxy in proxies:
        proxy.wait_ready()
    # Connected and subscribed: each announces itself once it has synchronised.
    wait_until(lambda: len(instances(proxies[0])) == n, timeout=20, what=f"{n} instances in the heartbeat list")
    return proxies


def shared_config(fake: FakeUpstream, server: RedisServer, keys: list[str], **extra) -> dict:
    return {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": k} for k in keys],
        "upstream-overrides": vendor_overrides(fake),
        "remote-management": {"secret-key": SECRET},
        "state-store": server.url,
        **extra,
    }


def ask(proxy: Proxy, model: str = MODEL) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/messages",
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def management(proxy: Proxy, method: str, route: str, **kw) -> httpx.Response:
    return httpx.request(method, proxy.base_url + API + route, headers={"x-management-key": SECRET}, timeout=10, **kw)


def instances(proxy: Proxy) -> list[dict]:
    r = management(proxy, "GET", "/instances")
    assert r.status_code == 200, r.text
    return r.json()["instances"]


def used(fake: FakeUpstream, model: str = MODEL, since: int = 0) -> Counter:
    """Requests per credential (API key) for `model` that reached the fake."""
    return Counter(r.api_key for r in fake.requests[since:] if r.json().get("model") == model)


def rate_limit_on(proxy: Proxy, fake: FakeUpstream, key: str, retry_after: str) -> None:
    """Have `key` answer one 429 with `retry_after`, and send `proxy` requests until it got it
    (a request the proxy then fails over to another credential: the client sees a success)."""
    fake.fail(key, 429, headers={"Retry-After": retry_after}, times=1)
    for _ in range(len(KEYS) + 1):
        before = len(fake.requests)
        assert ask(proxy).status_code == 200
        if key in [r.api_key for r in fake.requests[before:]]:
            return
    raise AssertionError(f"{key[-4:]} was never picked")


def assert_no_secret_in_store(server: RedisServer, secrets: list[str]) -> int:
    """Read every key's value, whatever its type; no secret may appear in it. Returns the
    number of keys read."""
    client = server.client()
    keys = list(client.scan_iter(count=500))
    for key in keys:
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "hash":
            values = [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "stream":
            values = [v for _, fields in client.xrange(key) for pair in fields.items() for v in pair]
        else:
            values = []
        blob = key + b"\n" + b"\n".join(v for v in values if v is not None)
        for secret in secrets:
            assert secret.encode() not in blob, (key, secret[-4:])
            assert secret[-12:].encode() not in blob, (key, secret[-4:])
    return len(keys)


def test_a_429_seen_by_one_instance_keeps_the_others_off_that_credential(fake, make_proxy, redis_server):  # noqa: F811
    a, b, c = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    rate_limit_on(a, fake, KEYS[0], "30")
    mark = len(fake.requests)
    for proxy in (b, c) * 5:
        assert ask(proxy).status_code == 200
    assert used(fake, since=mark) == {KEYS[1]: 10}
    # Only that model: the credential still serves the others, on every instance.
    other = Counter()
    for proxy in (b, c, b, c):
        before = len(fake.requests)
        assert ask(proxy, "claude-test-2").status_code == 200
        other += used(fake, "claude-test-2", since=before)
    assert other[KEYS[0]] == 2
    # Until it recovers: the shared rest lasts what the upstream said.
    keys = list(redis_server.client().scan_iter(match="cliproxy:rest:*"))
    assert len(keys) == 1
    assert 20_000 < redis_server.client().pttl(keys[0]) <= 30_000
    assert assert_no_secret_in_store(redis_server, [CLIENT_KEY, SECRET, *KEYS]) > 0


def test_a_short_rest_ends_on_every_instance(fake, make_proxy, redis_server):  # noqa: F811
    a, b, c = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    rate_limit_on(a, fake, KEYS[0], "2")
    rested_at = time.monotonic()
    mark = len(fake.requests)
    while time.monotonic() - rested_at < 1.5:
        assert ask(b).status_code == 200
    assert KEYS[0] not in used(fake, since=mark)
    time.sleep(max(0.0, 2.2 - (time.monotonic() - rested_at)))
    mark = len(fake.requests)
    for proxy in (b, c, b, c):
        assert ask(proxy).status_code == 200
    assert used(fake, since=mark)[KEYS[0]] >= 1


def test_round_robin_is_one_sequence_across_instances(fake, make_proxy, redis_server):  # noqa: F811
    proxies = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS))
    a, b, c = proxies
    # Per-instance cursors would send each instance's first request to the same credential.
    for proxy in (a, b, c, a):
        assert ask(proxy).status_code == 200
    assert len(set(r.api_key for r in fake.requests)) == 4

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: ask(proxies[i % 3]).status_code, range(116)))
    assert statuses == [200] * 116
    spread = used(fake)
    assert sum(spread.values()) == 120
    assert all(27 <= spread[k] <= 33 for k in KEYS), spread
    assert assert_no_secret_in_store(redis_server, [CLIENT_KEY, SECRET, *KEYS]) > 0


def test_management_switches_and_the_instance_list_are_shared(fake, make_proxy, redis_server, tmp_path):  # noqa: F811
    proxies = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    a, b, c = proxies
    listed = instances(b)
    assert sorted(i["address"] for i in listed) == sorted(f"127.0.0.1:{p.port}" for p in proxies)
    assert [i["self"] for i in listed].count(True) == 1
    assert all(i["version"] for i in listed)

    ids = {row["label"]: row["id"] for row in management(a, "GET", "/credentials").json()["credentials"]}
    first = next(v for k, v in ids.items() if k.endswith(KEYS[0][-4:] + ")"))
    r = management(a, "PATCH", "/credentials/status", json={"id": first, "disabled": True})
    assert r.status_code == 200, r.text
    wait_until(
        lambda: all(
            row["state"] == "disabled"
            for row in management(b, "GET", "/credentials").json()["credentials"]
            if row["id"] == first
        ),
        timeout=5,
        what="B shows the credential A disabled",
    )
    mark = len(fake.requests)
    for proxy in (b, c, b, c):
        assert ask(proxy).status_code == 200
    assert used(fake, since=mark) == {KEYS[1]: 4}

    assert management(c, "PATCH", "/credentials/status", json={"id": first, "disabled": False}).status_code == 200
    wait_until(lambda: not redis_server.client().smembers("cliproxy:disabled"), timeout=5, what="the switch off cleared")
    time.sleep(0.2)  # the announcement reaches the others
    mark = len(fake.requests)
    for proxy in (a, b, a, b):
        assert ask(proxy).status_code == 200
    assert used(fake, since=mark)[KEYS[0]] == 2

    # The status page lists the instances too.
    chromium()
    dom = run_chromium(f"{b.base_url}/status?key={SECRET}", tmp_path / "profile", "--dump-dom")
    assert sorted(re.findall(r'<tr class="instance" data-address="([^"]+)"', dom)) == sorted(
        f"127.0.0.1:{p.port}" for p in proxies
    )
    assert f"127.0.0.1:{b.port} (this one)" in dom
    assert assert_no_secret_in_store(redis_server, [CLIENT_KEY, SECRET, *KEYS]) > 0


def test_redis_stopped_mid_run_fails_no_request_and_sharing_resumes(fake, make_proxy, redis_server):  # noqa: F811
    proxies = start_instances(make_proxy, 3, shared_config(fake, redis_server, KEYS[:2]))
    a, b, _ = proxies
    failures: list[str] = []
    sent = Counter()
    stop = threading.Event()

    def traffic(proxy: Proxy) -> None:
        while not stop.is_set():
            try:
                r = ask(proxy)
                sent[r.status_code] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=traffic, args=(p,)) for p in proxies]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        redis_server.stop()
        time.sleep(3.0)
        redis_server.start()
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    assert sent[200] > 30
    for proxy in proxies:
        assert "unreachable" in proxy.output()

    # Back: each instance pushes its state and announces itself again (the store lost its data).
    took = wait_until(lambda: len(instances(a)) == 3, timeout=15, what="3 instances back in the heartbeat list")
    assert took < 15
    rate_limit_on(a, fake, KEYS[0], "30")
    mark = len(fake.requests)
    for _ in range(6):
        assert ask(b).status_code == 200
    assert used(fake, since=mark) == {KEYS[1]: 6}
