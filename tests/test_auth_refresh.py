"""Token refresh without a proxy: each provider's refresh call against the fake token server,
single flight, backoff, terminal failures, atomic persistence, Vertex service accounts."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from auth import providers
from auth.providers import antigravity
from auth.refresh import FAILURE_BACKOFF, Refresher, RefreshError, refresh_token
from auth.store import REFRESH_ERROR_KEY, AuthStore
from auth.tokens import format_time, load_token_file
from tests.fakes.tokens import FakeTokenServer

HOUR = 3600.0


@pytest.fixture
def tokens():
    with FakeTokenServer() as server:
        yield server


def iso(offset: float) -> str:
    import datetime

    return format_time(datetime.datetime.fromtimestamp(time.time() + offset, datetime.UTC))


def write(directory: Path, name: str, data: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(data))
    return path


def token_file(tokens: FakeTokenServer, directory: Path, kind: str, name: str, expires_in: float, **extra) -> Path:
    pair = tokens.issue(name)
    data = {"type": kind, "access_token": pair.access, "refresh_token": pair.refresh, "expired": iso(expires_in)}
    data.update(extra)
    return write(directory, f"{name}.json", data)


def refresher_for(store: AuthStore, tokens: FakeTokenServer, published: list | None = None) -> Refresher:
    return Refresher(
        store,
        overrides=tokens.overrides,
        publish=(lambda: published.append(1)) if published is not None else (lambda: None),
    )


def no_secret_in(caplog, *secrets: str) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text


async def _refresh_one(path: Path, tokens: FakeTokenServer):
    store = AuthStore()
    store.set_directory(path.parent)
    cred = store.credentials()[0]
    async with httpx.AsyncClient() as client:
        return cred, await refresh_token(cred, store.entry(cred.id).token, client, tokens.overrides())


@pytest.mark.parametrize(
    "kind, path, body_kind",
    [
        ("claude", "/v1/oauth/token", "json"),
        ("codex", "/oauth/token", "form"),
        ("antigravity", "/token", "form"),
        ("kimi", "/api/oauth/token", "form"),
        ("qwen", "/api/v1/oauth2/token", "form"),
        ("xai", "/oauth2/token", "form"),
    ],
)
def test_each_provider_refreshes_at_its_endpoint(tokens, tmp_path, kind, path, body_kind):
    file = token_file(tokens, tmp_path, kind, f"{kind}-a", -60, email="a@b", keep_me={"x": 1}, device_id="dev-1")
    old = tokens.current(f"{kind}-a")
    cred, result = asyncio.run(_refresh_one(file, tokens))
    call = tokens.calls[-1]
    assert call.path == path and call.grant_type == "refresh_token" and call.refresh_token == old.refresh
    assert call.client_id == providers.of(cred).client_id
    if body_kind == "json":
        assert "json" in call.headers["content-type"]
    if kind == "codex":
        assert call.body["scope"] == "openid profile email"
    if kind == "kimi":
        assert call.headers["x-msh-platform"] == "kimi_cli" and call.headers["x-msh-device-id"] == "dev-1"
    if kind == "claude":
        assert call.headers["user-agent"].startswith("axios/")
    if kind == "antigravity":
        assert call.body["client_secret"] == antigravity.PROVIDER.client_secret
        assert isinstance(result.token.data["timestamp"], int)
    new = tokens.current(f"{kind}-a")
    assert result.token.data["access_token"] == new.access
    assert result.token.data["refresh_token"] == new.refresh
    assert result.token.data["keep_me"] == {"x": 1}  # unknown fields survive
    assert result.token.expiry.timestamp() > time.time() + 7 * HOUR


def test_legacy_gemini_cli_files_keep_the_nested_token(tokens, tmp_path):
    pair = tokens.issue("gem")
    nested = {"access_token": pair.access, "refresh_token": pair.refresh, "token_type": "Bearer",
              "expiry": iso(-10), "client_id": "cid-from-file", "client_secret": "sec-from-file",
              "token_uri": "https://oauth2.googleapis.com/token", "scopes": ["a"]}
    file = write(tmp_path, "me@gmail.com-proj.json", {"type": "gemini", "token": nested, "project_id": "proj", "email": "me@gmail.com"})
    _, result = asyncio.run(_refresh_one(file, tokens))
    assert tokens.calls[-1].client_id == "cid-from-file"
    assert tokens.calls[-1].body["client_secret"] == "sec-from-file"
    data = result.token.data
    assert "access_token" not in data and "expired" not in data  # nothing hoisted to the top
    assert data["token"]["access_token"] == tokens.current("gem").access
    assert data["token"]["scopes"] == ["a"]
    assert result.token.expiry.timestamp() > time.time() + HOUR


def test_iflow_refresh_fetches_the_api_key(tokens, tmp_path):
    file = token_file(tokens, tmp_path, "iflow", "iflow-a", 60, api_key="sk-old")
    _, result = asyncio.run(_refresh_one(file, tokens))
    assert "authorization" in tokens.calls[-1].headers  # Basic client credentials
    assert tokens.user_info_calls == 1
    assert result.token.data["api_key"] == tokens.current("iflow-a").access


@pytest.mark.parametrize(
    "status, body, terminal",
    [
        (400, {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}, True),
        (401, {"error": {"message": "Your refresh token has already been used", "type": "invalid_request_error",
                         "code": "refresh_token_reused"}}, True),
        (400, {"error": "invalid_request"}, False),
        (500, {"error": "server_error"}, False),
        (429, {"error": "rate_limited"}, False),
    ],
)
def test_refusals_are_classified(tokens, tmp_path, status, body, terminal):
    file = token_file(tokens, tmp_path, "claude", "claude-a", -60)
    tokens.fail_next(status, body)
    with pytest.raises(RefreshError) as e:
        asyncio.run(_refresh_one(file, tokens))
    assert e.value.terminal is terminal
    assert f"HTTP {status}" in str(e.value)
    assert "rt-" not in str(e.value) and "at-" not in str(e.value)


def test_unreachable_token_endpoint_is_transient(tmp_path):
    file = write(tmp_path, "claude-a.json", {"type": "claude", "access_token": "a", "refresh_token": "r"})
    store = AuthStore()
    store.set_directory(tmp_path)
    cred = store.credentials()[0]

    async def go():
        async with httpx.AsyncClient() as client:
            await refresh_token(cred, store.entry(cred.id).token, client, {"platform.claude.com": "http://127.0.0.1:9"})

    with pytest.raises(RefreshError) as e:
        asyncio.run(go())
    assert not e.value.terminal and "unreachable" in str(e.value)
    assert file.exists()


def test_fifty_concurrent_requests_cause_one_refresh(tmp_path, caplog):
    with FakeTokenServer(latency=0.3) as tokens:
        file = token_file(tokens, tmp_path, "claude", "claude-a", -60)
        old = tokens.current("claude-a")
        store = AuthStore()
        store.set_directory(tmp_path)
        published: list = []
        refresher = refresher_for(store, tokens, published)
        cred = store.credentials()[0]

        async def go():
            results = await asyncio.gather(*(refresher.usable(cred) for _ in range(50)))
            await refresher.aclose()
            return results

        with caplog.at_level(logging.DEBUG, logger="cliproxy"):
            results = asyncio.run(go())
        new = tokens.current("claude-a")
        assert len(tokens.calls) == 1
        assert all(c is not None and c.secret == new.access for c, _ in results)
        assert all(c.id == cred.id for c, _ in results)
        on_disk = load_token_file(file)
        assert (on_disk.access_token, on_disk.refresh_token) == (new.access, new.refresh)
        assert published == [1]
        no_secret_in(caplog, old.access, old.refresh, new.access, new.refresh)


def test_background_check_refreshes_only_what_is_due(tokens, tmp_path):
    token_file(tokens, tmp_path, "claude", "claude-due", 3 * HOUR)  # lead 4 h: due
    token_file(tokens, tmp_path, "claude", "claude-fresh", 5 * HOUR)
    token_file(tokens, tmp_path, "codex", "codex-due", 4 * 24 * HOUR)  # lead 5 days: due
    token_file(tokens, tmp_path, "kimi", "kimi-fresh", 10 * 60)  # lead 5 min
    token_file(tokens, tmp_path, "qwen", "qwen-due", 10 * 60)  # lead 20 min
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)

    async def go():
        started = refresher.check()
        await asyncio.sleep(0.5)
        again = refresher.check()  # just refreshed, not due any more
        await refresher.aclose()
        return started, again

    started, again = asyncio.run(go())
    assert (started, again) == (3, 0)
    refreshed = {tokens.calls[i].refresh_token.split("-")[1] for i in range(3)}
    assert refreshed == {"claude", "codex", "qwen"}


def test_at_most_sixteen_refreshes_at_once(tmp_path):
    with FakeTokenServer(latency=0.2) as tokens:
        for i in range(40):
            token_file(tokens, tmp_path, "claude", f"claude-{i:02d}", -60)
        store = AuthStore()
        store.set_directory(tmp_path)
        refresher = refresher_for(store, tokens)

        async def go():
            assert refresher.check() == 40
            await asyncio.sleep(0)
            while refresher._inflight:
                await asyncio.sleep(0.05)
            await refresher.aclose()

        asyncio.run(go())
        assert len(tokens.calls) == 40
        assert tokens.max_active == 16


def test_invalid_grant_is_recorded_and_never_retried(tokens, tmp_path, caplog):
    file = token_file(tokens, tmp_path, "codex", "codex-a", -60)
    tokens.revoke_refresh("codex-a")
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)
    cred = store.credentials()[0]

    async def go():
        with caplog.at_level(logging.INFO, logger="cliproxy"):
            usable = await refresher.usable(cred)
            refresher.check()
            await asyncio.sleep(0.1)
            again = await refresher.usable(cred)
        await refresher.aclose()
        return usable, again

    (first, why), (second, _) = asyncio.run(go())
    assert first is None and "invalid_grant" in why and "log in again" in why
    assert second is None
    assert len(tokens.calls) == 1
    data = json.loads(file.read_text())
    assert data[REFRESH_ERROR_KEY]["error"] == "invalid_grant"
    assert data["refresh_token"] == tokens.current("codex-a").refresh  # nothing else changed
    assert store.credentials()[0].refresh_error == "invalid_grant"
    assert any("refused for good" in r.getMessage() for r in caplog.records)
    # A reload (the file as it is on disk) does not try again either.
    fresh_store = AuthStore()
    fresh_store.set_directory(tmp_path)
    assert not refresher_for(fresh_store, tokens).due(fresh_store.entries()[0], time.time())


def test_a_refresh_token_replaced_on_disk_is_adopted_not_marked(tokens, tmp_path):
    # Another writer (CLIProxyAPI sharing the directory) refreshed first: our copy is stale.
    file = token_file(tokens, tmp_path, "claude", "claude-a", -60)
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)
    cred = store.credentials()[0]
    stale = tokens.current("claude-a")

    async def go():
        # The other writer's refresh, not yet seen by the (absent) watcher.
        async with httpx.AsyncClient() as client:
            done = await refresh_token(cred, store.entry(cred.id).token, client, tokens.overrides())
        file.write_text(json.dumps(done.token.data))
        result = await refresher.usable(cred)
        await refresher.aclose()
        return result

    fresh, why = asyncio.run(go())
    assert fresh is not None, why
    assert fresh.secret == tokens.current("claude-a").access != stale.access
    assert REFRESH_ERROR_KEY not in json.loads(file.read_text())


def test_transient_failure_backs_off(tokens, tmp_path):
    token_file(tokens, tmp_path, "claude", "claude-a", -60)
    tokens.fail_next(503, {"error": "unavailable"})
    store = AuthStore()
    store.set_directory(tmp_path)
    now = [time.time()]
    refresher = Refresher(store, overrides=tokens.overrides, clock=lambda: now[0])
    cred = store.credentials()[0]

    async def go():
        first = await refresher.usable(cred)
        second = await refresher.usable(cred)  # within the backoff: no new attempt
        assert refresher.check() == 0
        now[0] += FAILURE_BACKOFF + 1
        third = await refresher.usable(cred)
        await refresher.aclose()
        return first, second, third

    first, second, third = asyncio.run(go())
    assert first[0] is None and "failed" in first[1]
    assert second[0] is None and "next attempt" in second[1]
    assert third[0] is not None and third[0].secret == tokens.current("claude-a").access
    assert len(tokens.calls) == 2


def test_after_unauthorized_refreshes_once_unless_already_refreshed(tokens, tmp_path):
    token_file(tokens, tmp_path, "claude", "claude-a", 5 * HOUR)
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)
    cred = store.credentials()[0]

    async def go():
        fresh = await refresher.after_unauthorized(cred)
        # A second request that left with the old token: the new one is already there.
        again = await refresher.after_unauthorized(cred)
        await refresher.aclose()
        return fresh, again

    fresh, again = asyncio.run(go())
    assert fresh is not None and fresh.secret == tokens.current("claude-a").access
    assert again is not None and again.secret == fresh.secret
    assert len(tokens.calls) == 1


def test_an_edit_during_the_refresh_is_kept(tmp_path):
    with FakeTokenServer(latency=0.3) as tokens:
        file = token_file(tokens, tmp_path, "claude", "claude-a", -60)
        store = AuthStore()
        store.set_directory(tmp_path)
        refresher = refresher_for(store, tokens)

        async def go():
            task = asyncio.ensure_future(refresher.refresh(store.credentials()[0].id))
            await asyncio.sleep(0.1)
            data = json.loads(file.read_text())
            data["priority"] = 7
            file.write_text(json.dumps(data))
            store.scan()
            result = await task
            await refresher.aclose()
            return result

        cred = asyncio.run(go())
        on_disk = json.loads(file.read_text())
        assert on_disk["priority"] == 7 and cred.priority == 7
        assert on_disk["refresh_token"] == tokens.current("claude-a").refresh


def test_a_new_login_during_the_refresh_wins(tmp_path):
    with FakeTokenServer(latency=0.3) as tokens:
        file = token_file(tokens, tmp_path, "claude", "claude-a", -60)
        store = AuthStore()
        store.set_directory(tmp_path)
        refresher = refresher_for(store, tokens)

        async def go():
            task = asyncio.ensure_future(refresher.refresh(store.credentials()[0].id))
            await asyncio.sleep(0.1)
            file.write_text(json.dumps({"type": "claude", "access_token": "at-login", "refresh_token": "rt-login",
                                        "expired": iso(8 * HOUR)}))
            store.scan()
            result = await task
            await refresher.aclose()
            return result

        cred = asyncio.run(go())
        assert cred.secret == "at-login"
        assert json.loads(file.read_text())["refresh_token"] == "rt-login"


def _service_account(tmp_path: Path, tokens: FakeTokenServer) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = "sa@proj.iam.gserviceaccount.com"
    tokens.public_keys[email] = key.public_key()
    sa = {"type": "service_account", "project_id": "proj", "private_key_id": "kid1", "private_key": pem,
          "client_email": email, "token_uri": "https://oauth2.googleapis.com/token"}
    return write(tmp_path, "vertex-proj.json", {"type": "vertex", "service_account": sa, "project_id": "proj",
                                                "email": email, "location": "europe-west4"})


def test_vertex_mints_a_token_with_a_signed_jwt_and_caches_it(tokens, tmp_path):
    file = _service_account(tmp_path, tokens)
    before = file.read_bytes()
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)
    cred = store.credentials()[0]

    async def go():
        first, _ = await refresher.usable(cred)
        second, _ = await refresher.usable(cred)
        due = refresher.check()
        await refresher.aclose()
        return first, second, due

    first, second, due = asyncio.run(go())
    assert first is not None and first.secret.startswith("at-sa-")
    assert second.secret == first.secret and due == 0
    assert len(tokens.calls) == 1
    assert tokens.calls[0].grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert file.read_bytes() == before  # the minted token is never written
    assert first.expires_at == pytest.approx(time.time() + 3599, abs=5)


def test_vertex_with_a_bad_signature_is_refused(tokens, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    _service_account(tmp_path, tokens)
    tokens.public_keys["sa@proj.iam.gserviceaccount.com"] = rsa.generate_private_key(65537, 2048).public_key()
    store = AuthStore()
    store.set_directory(tmp_path)
    refresher = refresher_for(store, tokens)

    async def go():
        result = await refresher.usable(store.credentials()[0])
        await refresher.aclose()
        return result

    cred, why = asyncio.run(go())
    assert cred is None and "invalid_grant" in why
