"""OAuth tokens across several real mitmdump instances sharing one real redis-server: one refresh
per rotating token, every instance on the rotated token, `kill -9` of the lock holder, nothing in
plaintext in Redis or the logs, and no sharing without a key."""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from auth.shared.tokens import KEY_ENV, Record, TokenCipher
from tests import clients
from tests.conftest import Proxy
from tests.fakes.tokens import FakeTokenServer
from tests.fakes.upstream import FakeUpstream
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - a fixture
from tests.test_e2e_oauth import claude_file, overrides
from tests.waiting import wait_until

KEY = "e2e state-store key: a long random string in real life"
PREFIX = "cliproxy:"
FAST_REFRESH = ("--set", "cliproxy_refresh_interval=0.2")


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()
    yield
    fake.authorize = None


def start_group(make_proxy, count: int, server: RedisServer, fake: FakeUpstream, tokens: FakeTokenServer,
                login: Path | None, *, key: str | None = KEY, args: tuple[str, ...] = ()) -> list[Proxy]:
    """`count` proxies on one store, each with its own auth dir holding a copy of `login`'s files
    (None: an empty one)."""
    config = {"state-store": server.url, "upstream-overrides": overrides(fake, tokens)}
    if key is not None:
        config["state-store-key"] = key
    proxies = []
    for _ in range(count):
        proxy = make_proxy(config, start=False, extra_args=args)
        if login is not None:
            shutil.copytree(login, proxy.workdir / "auth")
        proxies.append(proxy.start(wait=False))  # their start-ups overlap
    for proxy in proxies:
        proxy.wait_ready()
        proxy.wait_for_output("sharing pool state through")
    return proxies


def record(server: RedisServer, cred_id: str) -> Record:
    blob = server.client().get(f"{PREFIX}token:{cred_id}")
    assert blob is not None, f"no shared token for {cred_id}"
    return Record.opened(TokenCipher(KEY).open(blob))


def every_value(server: RedisServer) -> bytes:
    """Every key of the store and everything it holds, whatever its type."""
    client = server.client()
    out = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out.extend(b"%s=%s" % kv for kv in client.hgetall(key).items())
        elif kind == b"list":
            out.extend(client.lrange(key, 0, -1))
        elif kind in (b"set",):
            out.extend(client.smembers(key))
        elif kind == b"zset":
            out.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            for _, fields in client.xrange(key):
                out.extend(b"%s=%s" % kv for kv in fields.items())
    return b"\n".join(out)


def post_claude(proxy: Proxy, timeout: float = 10) -> httpx.Response:
    return httpx.post(proxy.base_url + "/v1/messages", timeout=timeout, headers={"anthropic-version": "2023-06-01"},
                      json={"model": "claude-test-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


# -- one refresh for all ---------------------------------------------------------------------------


def test_sixty_requests_over_three_instances_cause_one_refresh_and_all_use_its_token(
    fake, make_proxy, redis_server, tmp_path,  # noqa: F811
):
    with FakeTokenServer(latency=0.5) as tokens:  # strict rotation: a second refresh would fail
        fake.authorize = tokens.check_upstream
        # The instances first run without the login (the refresh loop's first check at start-up
        # would refresh it before the next instance is up); then each gets its copy at once,
        # through its watcher, and the requests find it expired.
        proxies = start_group(make_proxy, 3, redis_server, fake, tokens, None,
                              args=("--set", "cliproxy_refresh_interval=3600"))
        login = claude_file(tmp_path / "login", tokens, "claude-team", expires_in=-30)
        old = tokens.current("claude-team")
        for proxy in proxies:
            shutil.copy2(login, proxy.workdir / "auth" / login.name)
        for proxy in proxies:
            wait_until(lambda p=proxy: p.get("/healthz").json()["auth_files"] == 1, 10, "the login loaded")
        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            results = list(pool.map(lambda i: clients.ask_claude(proxies[i % 3], timeout=30), range(60)))
        assert all(r.content[0].text == fake.text for r in results)
        new = tokens.current("claude-team")
        assert new.refresh != old.refresh
        assert len(tokens.refresh_calls()) == 1
        assert {r.api_key for r in fake.requests} == {new.access}
        for proxy in proxies:
            path = proxy.workdir / "auth" / "claude-team.json"
            assert json.loads(path.read_text())["refresh_token"] == new.refresh
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        # Later requests, on every instance, go out with the new token and refresh nothing.
        for proxy in proxies:
            clients.ask_claude(proxy, timeout=30)
        assert {r.api_key for r in fake.requests[-3:]} == {new.access}
        assert len(tokens.refresh_calls()) == 1
        assert record(redis_server, "claude:claude-team.json").token.refresh_token == new.refresh
        outputs = [p.output() for p in proxies]
        assert sum("refreshed the token of auth file claude-team.json" in o for o in outputs) == 1
        assert sum("took the newer token another instance put into the shared store" in o for o in outputs) == 2
        for secret in (old.access, old.refresh, new.access, new.refresh, KEY):
            assert not any(secret in o for o in outputs), "a secret in a log"


# -- kill -9 of the lock holder ---------------------------------------------------------------------


def test_kill_9_of_the_refresh_lock_holder_leaves_every_account_a_usable_refresh_token(
    fake, make_proxy, redis_server, tmp_path,  # noqa: F811
):
    # Grace rotation (tests/fakes/tokens.py): a new refresh token the holder got but never stored
    # is lost, and the old one stays valid until the new generation is used. Tokens live 31 s,
    # 1 s past the proxies' expiry margin, and the endpoint takes 0.8 s: refreshes run all along,
    # each holding its lock for about a second.
    names = [f"claude-k{i}" for i in range(4)]
    with FakeTokenServer(grace=True, latency=0.8, expires_in=31) as tokens:
        fake.authorize = tokens.check_upstream
        for name in names:
            claude_file(tmp_path / "login", tokens, name, expires_in=-30)
        proxies = start_group(make_proxy, 3, redis_server, fake, tokens, tmp_path / "login",
                              args=(*FAST_REFRESH, "--set", "cliproxy_token_lock_ttl=2"))
        by_pid = {str(p.process.pid): p for p in proxies}
        client = redis_server.client()
        stop = threading.Event()

        def traffic(proxy: Proxy) -> None:
            while not stop.is_set():
                try:
                    post_claude(proxy, timeout=5)
                except httpx.HTTPError:
                    time.sleep(0.05)

        workers = [threading.Thread(target=traffic, args=(p,), daemon=True) for p in proxies for _ in range(2)]
        for w in workers:
            w.start()
        rng = random.Random(20240515)
        kills = 0
        try:
            deadline = time.monotonic() + 120
            while kills < 10 and time.monotonic() < deadline:
                locks = list(client.scan_iter(f"{PREFIX}token-lock:*"))
                if not locks:
                    time.sleep(0.01)
                    continue
                lock = rng.choice(locks)
                owner = client.get(lock)
                time.sleep(rng.uniform(0.0, 0.7))  # a random moment of its hold
                if owner is None or client.get(lock) != owner:
                    continue  # released meanwhile: not mid-refresh any more
                pid = owner.decode().split("/")[0].split(":")[-2]
                proxy = by_pid.pop(pid, None)
                if proxy is None:
                    continue
                proxy.process.kill()  # SIGKILL: no cleanup of any kind, the lock stays
                proxy.process.wait()
                proxy.log.close()
                kills += 1
                proxy.start(wait=False)  # its start-up overlaps the next kills
                by_pid[str(proxy.process.pid)] = proxy
            assert kills == 10
            for proxy in proxies:
                proxy.wait_ready()
            time.sleep(3.0)  # the last lock expires and traffic refreshes past it
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=15)
        wait_until(lambda: not list(client.scan_iter(f"{PREFIX}token-lock:*")), 10, "every refresh lock released")
        time.sleep(0.5)  # the last publications adopted
        for proxy in proxies:
            proxy.stop()
        dead = set()
        for name in names:
            shared = record(redis_server, f"claude:{name}.json").token.refresh_token
            files = [json.loads((p.workdir / "auth" / f"{name}.json").read_text())["refresh_token"] for p in proxies]
            if not all(tokens.refresh_token_usable(t) for t in (shared, *files)):
                dead.add(name)
        print(f"kill -9 of the lock holder x{kills}: {len(dead)} of {len(names)} accounts left with a dead refresh "
              f"token; {len(tokens.refresh_calls())} refreshes")
        assert dead == set()
        assert len(tokens.refresh_calls()) >= len(names)


# -- secrets ---------------------------------------------------------------------------------------


def test_no_token_nor_the_key_is_in_redis_or_a_log_in_plaintext(
    fake, make_proxy, redis_server, tmp_path, monkeypatch,  # noqa: F811
):
    # The key from the environment (it wins over the config's): instances share through it.
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeTokenServer(latency=0.2) as tokens:
        fake.authorize = tokens.check_upstream
        claude_file(tmp_path / "login", tokens, "claude-secret", expires_in=-30)
        old = tokens.current("claude-secret")
        proxies = start_group(make_proxy, 2, redis_server, fake, tokens, tmp_path / "login",
                              key="a wrong key the environment's overrides")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: clients.ask_claude(proxies[i % 2], timeout=30), range(4)))
        new = tokens.current("claude-secret")
        assert len(tokens.refresh_calls()) == 1
        assert record(redis_server, "claude:claude-secret.json").token.access_token == new.access
        dump = every_value(redis_server)
        assert b"claude:claude-secret.json" in dump  # the scan did see the token's key
        secrets = (old.access, old.refresh, new.access, new.refresh, KEY, "a wrong key the environment's overrides")
        for secret in secrets:
            assert secret.encode() not in dump, "a secret in Redis in plaintext"
            for proxy in proxies:
                assert secret not in proxy.output(), "a secret in a log"


# -- without a key ---------------------------------------------------------------------------------


def test_without_a_key_tokens_stay_on_each_instance_and_the_proxy_says_so(
    fake, make_proxy, redis_server, tmp_path,  # noqa: F811
):
    with FakeTokenServer() as tokens:
        fake.authorize = tokens.check_upstream
        # As in the first test: the copies arrive once both run, and only requests refresh.
        a, b = start_group(make_proxy, 2, redis_server, fake, tokens, None, key=None,
                           args=("--set", "cliproxy_refresh_interval=3600"))
        for proxy in (a, b):
            proxy.wait_for_output("has no state-store-key (nor CLIPROXY_STATE_KEY): OAuth tokens are NOT shared")
            assert proxy.output().count("OAuth tokens are NOT shared") == 1
        login = claude_file(tmp_path / "login", tokens, "claude-own", expires_in=-30)
        old = tokens.current("claude-own")
        for proxy in (a, b):
            shutil.copy2(login, proxy.workdir / "auth" / login.name)
            wait_until(lambda p=proxy: p.get("/healthz").json()["auth_files"] == 1, 10, "the login loaded")
        assert clients.ask_claude(a, timeout=30).content[0].text == fake.text
        new = tokens.current("claude-own")
        assert len(tokens.refresh_calls()) == 1
        assert json.loads((a.workdir / "auth" / "claude-own.json").read_text())["refresh_token"] == new.refresh
        time.sleep(1.0)
        # B was told nothing: its file keeps the old token, and Redis holds no token at all.
        assert json.loads((b.workdir / "auth" / "claude-own.json").read_text())["refresh_token"] == old.refresh
        assert not list(redis_server.client().scan_iter(f"{PREFIX}token*"))
        assert "OAuth tokens shared through" not in a.output() + b.output()
