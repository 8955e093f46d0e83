"""OAuth tokens in the shared state store, without a proxy: the encryption, the refresh lock and
the adoption of another instance's token, seeding, and a store that is down. Each "instance" is
an AuthStore over its own copy of the token file, a Refresher and a SharedTokens on one real
redis-server; the token endpoint is the fake with rotating refresh tokens."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from cryptography.fernet import InvalidToken
from redis.asyncio.lock import Lock

from auth.refresh import Refresher
from auth.shared.store import SharedStore
from auth.shared.tokens import Record, SharedTokens, TokenCipher
from auth.store import AuthStore
from auth.tokens import format_time
from tests.conftest import free_port
from tests.fakes.tokens import FakeTokenServer
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - a fixture

KEY = "a long passphrase that is the state-store key"
PREFIX = "test:"


def iso(offset: float) -> str:
    import datetime

    return format_time(datetime.datetime.fromtimestamp(time.time() + offset, datetime.UTC))


def claude_file(directory: Path, tokens: FakeTokenServer, name: str, expires_in: float) -> Path:
    pair = tokens.issue(name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({
        "type": "claude", "access_token": pair.access, "refresh_token": pair.refresh,
        "email": f"{name}@example.com", "expired": iso(expires_in),
    }))
    return path


def run_async(test):
    """A coroutine test, run on its own event loop (fixtures as for any test)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


class Node:
    """One instance's token side, on its own auth dir."""

    def __init__(self, directory: Path, url: str, tokens: FakeTokenServer, *, key: str = KEY, ttl: float = 5.0) -> None:
        self.directory = directory
        self.auth = AuthStore()
        self.auth.set_directory(directory)
        self.store = SharedStore(url, PREFIX, instance=f"node-{directory.name}")
        self.refresher = Refresher(self.auth, overrides=tokens.overrides)
        self.shared = SharedTokens(self.store, key, self.auth, self.refresher.adopt, lock_ttl=ttl)
        self.refresher.shared = self.shared
        self.store.on_connect.append(self.shared.resync)
        self.tasks: list[asyncio.Task] = []

    async def start(self, wait_up: bool = True) -> Node:
        self.tasks = [asyncio.create_task(self.store.run()), asyncio.create_task(self.shared.run())]
        if wait_up:
            await until(lambda: self.store.up, "the store connected")
            await asyncio.sleep(0.1)  # its resync
        return self

    async def stop(self) -> None:
        self.store.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.refresher.aclose()
        await self.shared.aclose()
        await self.store.aclose()

    def file(self, name: str) -> dict:
        return json.loads((self.directory / f"{name}.json").read_text())

    def credential(self, name: str):
        return self.auth.entry(f"claude:{name}.json").credential


async def until(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


def nodes(tmp_path: Path, url: str, tokens: FakeTokenServer, source: Path, count: int, **kw) -> list[Node]:
    result = []
    for i in range(count):
        directory = tmp_path / f"auth{i}"
        directory.mkdir()
        shutil.copy2(source, directory / source.name)
        result.append(Node(directory, url, tokens, **kw))
    return result


def stored(server: RedisServer, cred_id: str, key: str = KEY) -> Record:
    blob = server.client().get(f"{PREFIX}token:{cred_id}")
    assert blob is not None, f"no shared record for {cred_id}"
    return Record.opened(TokenCipher(key).open(blob))


# -- the encryption ---------------------------------------------------------------------------------


def test_any_string_keys_a_cipher_and_only_the_same_string_opens_it():
    sealed = TokenCipher(KEY).seal({"refresh_token": "rt-secret-value"})
    assert b"rt-secret-value" not in sealed and KEY.encode() not in sealed
    assert TokenCipher(KEY).open(sealed) == {"refresh_token": "rt-secret-value"}  # another instance
    for other in ("another passphrase entirely", KEY + " ", "x"):
        with pytest.raises(InvalidToken):
            TokenCipher(other).open(sealed)
    tampered = sealed[:-3] + (b"AAA" if sealed[-3:] != b"AAA" else b"BBB")
    with pytest.raises(InvalidToken):
        TokenCipher(KEY).open(tampered)
    # Refresh-token digests are keyed: the same token names differently under another key.
    assert TokenCipher(KEY).digest("rt-1") == TokenCipher(KEY).digest("rt-1") != TokenCipher("k2").digest("rt-1")
    assert "rt-1" not in TokenCipher(KEY).digest("rt-1")
    with pytest.raises(ValueError):
        TokenCipher("")


# -- the lock, and adopting -------------------------------------------------------------------------


@run_async
async def test_three_instances_refresh_an_expired_token_once_and_all_adopt_it(tmp_path, redis_server):  # noqa: F811
    with FakeTokenServer(latency=0.4) as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=-30)
        old = tokens.current("acct")
        group = [await n.start() for n in nodes(tmp_path, redis_server.url, tokens, source, 3)]
        try:
            cred = group[0].credential("acct")
            results = await asyncio.gather(*(n.refresher.usable(cred) for n in group for _ in range(10)))
            new = tokens.current("acct")
            assert new.refresh != old.refresh
            assert len(tokens.refresh_calls()) == 1
            assert {c.secret for c, _ in results} == {new.access}
            for node in group:
                assert node.file("acct")["refresh_token"] == new.refresh
                assert oct((node.directory / "acct.json").stat().st_mode & 0o777) == "0o600"
            record = stored(redis_server, "claude:acct.json")
            assert record.token.refresh_token == new.refresh and record.version == 2
            assert TokenCipher(KEY).digest(old.refresh) in record.replaced
            assert sum(n.refresher.attempts for n in group) == 1
        finally:
            for node in group:
                await node.stop()


@run_async
async def test_a_holder_that_died_leaves_a_lock_that_expires_then_the_next_refreshes(tmp_path, redis_server):  # noqa: F811
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=-30)
        (node,) = [await n.start() for n in nodes(tmp_path, redis_server.url, tokens, source, 1, ttl=1.0)]
        try:
            # An instance took the lock and was killed: nobody releases it.
            dead = Lock(node.store.client, f"{PREFIX}token-lock:claude:acct.json", timeout=1.0)
            assert await dead.acquire(blocking=False)
            started = time.monotonic()
            cred, why = await node.refresher.usable(node.credential("acct"))
            waited = time.monotonic() - started
            assert cred is not None, why
            assert 0.7 < waited < 3.0
            assert len(tokens.refresh_calls()) == 1
            assert cred.secret == tokens.current("acct").access
            assert stored(redis_server, "claude:acct.json").token.refresh_token == tokens.current("acct").refresh
        finally:
            await node.stop()


@run_async
async def test_after_taking_the_lock_the_shared_token_is_read_again(tmp_path, redis_server):  # noqa: F811
    # B holds the old token and has missed the publication: it takes the lock, finds the
    # store's token newer than its own, and adopts it instead of refreshing a dead token.
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=-30)
        a, b = [await n.start() for n in nodes(tmp_path, redis_server.url, tokens, source, 2)]
        try:
            b.shared._spawn = lambda loop, work: work.close()  # B hears no publication
            await a.refresher.refresh("claude:acct.json")
            assert b.file("acct")["refresh_token"] != tokens.current("acct").refresh
            cred, _ = await b.refresher.usable(b.credential("acct"))
            assert cred is not None and cred.secret == tokens.current("acct").access
            assert len(tokens.refresh_calls()) == 1 and b.refresher.attempts == 0
            assert b.file("acct")["refresh_token"] == tokens.current("acct").refresh
        finally:
            await a.stop()
            await b.stop()


@run_async
async def test_a_store_that_is_down_leaves_the_refresh_local(tmp_path):
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=-30)
        (node,) = nodes(tmp_path, f"redis://127.0.0.1:{free_port()}/0", tokens, source, 1)
        await node.start(wait_up=False)
        try:
            # The first refresh waits a few seconds for the store's first connection...
            cred, why = await node.refresher.usable(node.credential("acct"))
            assert cred is not None, why
            assert node.file("acct")["refresh_token"] == tokens.current("acct").refresh
            # ... and later ones no longer than a blip's wait.
            await asyncio.sleep(0.5)
            started = time.monotonic()
            refreshed = await node.refresher.refresh("claude:acct.json")
            assert refreshed is not None and refreshed.secret == tokens.current("acct").access
            assert time.monotonic() - started < 3.0
            assert len(tokens.refresh_calls()) == 2
        finally:
            await node.stop()


@run_async
async def test_a_store_back_after_a_local_refresh_gets_the_new_token(tmp_path):
    server = RedisServer(tmp_path / "redis-data")
    (tmp_path / "redis-data").mkdir()
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=-30)
        server.start()
        (node,) = [await n.start() for n in nodes(tmp_path, server.url, tokens, source, 1)]
        try:
            assert stored(server, "claude:acct.json").token.refresh_token == tokens.current("acct").refresh
            server.stop()
            cred, why = await node.refresher.usable(node.credential("acct"))  # finds it down
            assert cred is not None, why
            server.start()
            await until(lambda: node.store.up, "reconnected", timeout=15)
            await until(
                lambda: _stored_refresh(server) == tokens.current("acct").refresh,
                "the local refresh pushed once the store is back", timeout=5,
            )
        finally:
            await node.stop()
            server.stop()


def _stored_refresh(server: RedisServer) -> str:
    try:
        return stored(server, "claude:acct.json").token.refresh_token
    except AssertionError:
        return ""


# -- seeding ---------------------------------------------------------------------------------------


@run_async
async def test_seeding_pushes_a_new_file_adopts_over_a_stale_one_and_a_new_login_replaces(tmp_path, redis_server):  # noqa: F811
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=3600)
        first = tokens.current("acct")
        a, b = nodes(tmp_path, redis_server.url, tokens, source, 2)
        await a.start()
        try:
            # Not in the store: A's file is pushed.
            assert stored(redis_server, "claude:acct.json").token.refresh_token == first.refresh
            await a.refresher.refresh("claude:acct.json")
            second = tokens.current("acct")
            # B starts with the copy A has since rotated (a newer mtime than the record does
            # not matter: the store remembers that refresh token as replaced).
            os.utime(b.directory / "acct.json")
            await b.start()
            assert b.file("acct")["refresh_token"] == second.refresh
            assert b.credential("acct").secret == second.access

            # A new login on B while it runs: the watcher's report replaces the shared token,
            # and A adopts it through the publication.
            login = tokens.issue("acct")
            data = {**b.file("acct"), "access_token": login.access, "refresh_token": login.refresh}
            (b.directory / "acct.json").write_text(json.dumps(data))
            result = b.auth.scan()
            assert result.changed == ["claude:acct.json"]
            b.shared.files_changed(result.added, result.changed)
            await until(lambda: a.file("acct")["refresh_token"] == login.refresh, "A took B's new login")
            assert stored(redis_server, "claude:acct.json").token.refresh_token == login.refresh
        finally:
            await a.stop()
            await b.stop()


@run_async
async def test_a_file_older_than_the_record_is_not_pushed_over_it(tmp_path, redis_server):  # noqa: F811
    # Two different logins of one account: the one written to the store last wins at start-up,
    # unless the file was modified after it.
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=3600)
        a, b = nodes(tmp_path, redis_server.url, tokens, source, 2)
        other = tokens.issue("acct")
        data = {**json.loads(source.read_text()), "access_token": other.access, "refresh_token": other.refresh}
        (b.directory / "acct.json").write_text(json.dumps(data))
        os.utime(b.directory / "acct.json", (time.time() - 600, time.time() - 600))
        b.auth.scan()
        await a.start()
        await b.start()
        try:
            assert b.file("acct")["refresh_token"] == json.loads(source.read_text())["refresh_token"]
            assert stored(redis_server, "claude:acct.json").version == 1
        finally:
            await a.stop()
            await b.stop()


@run_async
async def test_an_instance_with_another_key_cannot_read_the_record_and_says_so(tmp_path, redis_server, caplog):  # noqa: F811
    with FakeTokenServer() as tokens:
        source = claude_file(tmp_path / "login", tokens, "acct", expires_in=3600)
        a, b = nodes(tmp_path, redis_server.url, tokens, source, 2)
        b.shared.cipher = TokenCipher("not the same key")
        await a.start()
        await b.start()
        try:
            assert "cannot be opened with this instance's key" in caplog.text
            assert stored(redis_server, "claude:acct.json").version == 1  # not overwritten
            for secret in (KEY, tokens.current("acct").refresh, tokens.current("acct").access):
                assert secret not in caplog.text
        finally:
            await a.stop()
            await b.stop()
