"""What iFlow, Kimi and Antigravity upstream requests carry besides the token, and the Code
Assist project found at first use for a Gemini CLI / Antigravity file that names none."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import httpx

from auth.providers import antigravity, iflow, kimi
from auth.credential import Credential
from auth.login import antigravity as antigravity_login
from auth.login import kimi as kimi_login
from auth.refresh import Refresher
from auth.store import AuthStore
from auth.tokens import format_time, load_token_file
from routing import legs
from routing.endpoints import Endpoint, Kind
from routing.router import Route
from routing.upstream import ClientRequest, header_list
from translators.formats import Format

CHAT = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def oauth(provider: str, **kw) -> Credential:
    kw.setdefault("secret", "oauth-access-token")
    return Credential(provider=provider, source=f"{provider}-a.json", kind="oauth", path=f"/auth/{provider}-a.json", **kw)


def call(fmt: Format, body: dict, headers: dict | None = None) -> ClientRequest:
    raw = json.dumps(body).encode()
    headers = headers or {}
    return ClientRequest(Endpoint(Kind.GENERATE, fmt), "m", False, "POST", "", (), headers,
                         tuple(headers.items()), raw, json.loads(raw))


def plan(cred: Credential, client: ClientRequest, model: str) -> legs.Leg:
    return legs.plan(client, Route(cred, model), {})


# -- iFlow ----------------------------------------------------------------------------------------


def test_iflow_signature_is_hmac_sha256_of_ua_session_timestamp_keyed_by_the_api_key():
    sig = iflow.signature("sk-key", "iFlow-Cli", "session-abc", 1700000000123)
    expected = hmac.new(b"sk-key", b"iFlow-Cli:session-abc:1700000000123", hashlib.sha256).hexdigest()
    assert sig == expected and len(sig) == 64


def test_iflow_requests_carry_a_signed_session_and_timestamp():
    client = call(Format.OPENAI_CHAT, CHAT, headers={"user-agent": "OpenAI/Python 1.0"})
    before = int(time.time() * 1000)
    leg = plan(oauth("iflow", secret="sk-iflow-key"), client, "glm-4.6")
    h = leg.target.extra_headers
    assert h["user-agent"] == "iFlow-Cli"  # the client's own is replaced: the signature covers it
    assert h["session-id"].startswith("session-")
    uuid.UUID(h["session-id"].removeprefix("session-"))
    stamp = int(h["x-iflow-timestamp"])
    assert before <= stamp <= int(time.time() * 1000)
    assert h["x-iflow-signature"] == iflow.signature("sk-iflow-key", "iFlow-Cli", h["session-id"], stamp)
    sent = {k.lower(): v for k, v in header_list(client.raw_headers, leg.target, {}, len(leg.body))}
    assert sent["user-agent"] == "iFlow-Cli"
    # A new session for every attempt.
    assert plan(oauth("iflow", secret="sk-iflow-key"), client, "glm-4.6").target.extra_headers["session-id"] != h["session-id"]


# -- Kimi -----------------------------------------------------------------------------------------


def test_kimi_requests_carry_the_device_headers_of_the_login():
    client = call(Format.OPENAI_CHAT, CHAT, headers={"user-agent": "curl/8"})
    leg = plan(oauth("kimi", device_id="dev-123"), client, "kimi-k2")
    h = leg.target.extra_headers
    assert h["x-msh-device-id"] == "dev-123"
    assert h["x-msh-platform"] == "kimi_cli" and h["x-msh-version"] == kimi.VERSION
    assert h["x-msh-device-model"] == kimi.device_model()
    assert h["user-agent"] == kimi.USER_AGENT
    # One definition: the login sends the very same device headers.
    assert kimi_login.device_headers("dev-123") == kimi.device_headers("dev-123")
    assert {k.lower(): v for k, v in kimi_login.device_headers("dev-123").items()}.items() <= h.items()
    # A file without a device id sends none rather than an empty one.
    assert "x-msh-device-id" not in plan(oauth("kimi"), client, "kimi-k2").target.extra_headers


def test_kimi_device_id_comes_from_the_token_file(tmp_path: Path):
    from auth.store import credential_from_token
    from auth.tokens import TokenFile

    cred = credential_from_token(TokenFile(tmp_path / "kimi-1.json", {"type": "kimi", "access_token": "a", "device_id": "d-9"}))
    assert cred.device_id == "d-9"


# -- Antigravity ----------------------------------------------------------------------------------


def test_antigravity_user_agent_base_url_and_envelope_fields():
    client = call(Format.OPENAI_CHAT, CHAT, headers={"user-agent": "curl/8"})
    leg = plan(oauth("antigravity", project_id="ag-proj"), client, "gemini-2.5-flash")
    assert leg.target.url == "https://daily-cloudcode-pa.googleapis.com/v1internal:generateContent"
    assert leg.target.extra_headers["user-agent"] == "antigravity/hub/2.9.1 darwin/arm64"
    assert antigravity_login.USER_AGENT == antigravity.USER_AGENT
    assert antigravity_login.DAILY_CODE_ASSIST == antigravity.BASE_URLS[0] + "/v1internal"
    sent = json.loads(leg.body)
    assert (sent["model"], sent["project"], sent["userAgent"], sent["requestType"]) == (
        "gemini-2.5-flash", "ag-proj", "antigravity", "agent")
    assert sent["requestId"].startswith("agent-")
    assert sent["request"]["contents"][0]["parts"][0]["text"] == "hi"
    image = json.loads(plan(oauth("antigravity", project_id="p"), client, "gemini-3-pro-image").body)
    assert image["requestType"] == "image_gen" and image["requestId"].startswith("image_gen/")
    # Gemini CLI accounts get none of it.
    gcli = json.loads(plan(oauth("gemini-cli", project_id="p"), client, "gemini-2.5-flash").body)
    assert "userAgent" not in gcli and "requestId" not in gcli


def test_antigravity_file_overrides():
    client = call(Format.OPENAI_CHAT, CHAT)
    cred = oauth("antigravity", project_id="p", base_url="https://ag.example",
                 user_agent="antigravity/hub/3.0.0 darwin/arm64 google-api-nodejs-client/10.3.0")
    leg = plan(cred, client, "gemini-2.5-flash")
    assert leg.target.url == "https://ag.example/v1internal:generateContent"
    assert leg.target.extra_headers["user-agent"] == "antigravity/hub/3.0.0 darwin/arm64"
    custom = plan(oauth("antigravity", project_id="p", user_agent="my-agent/1"), client, "gemini-2.5-flash")
    assert custom.target.extra_headers["user-agent"] == "my-agent/1"


# -- Code Assist project discovery ----------------------------------------------------------------


def _expiry(seconds: float) -> str:
    import datetime

    return format_time(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds))


class FakeCodeAssist:
    """loadCodeAssist without a project, then onboardUser done at the second poll."""

    def __init__(self, project: str = "found-proj", fail: bool = False) -> None:
        self.project, self.fail = project, fail
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit(":", 1)[-1]
        self.calls.append((request.url.host, method, json.loads(request.content or b"{}")))
        assert request.headers["authorization"] == "Bearer at-1"
        if self.fail:
            return httpx.Response(403, json={"error": {"message": "denied"}})
        if method == "loadCodeAssist":
            return httpx.Response(200, json={"allowedTiers": [{"id": "free-tier", "isDefault": True}]})
        if method == "onboardUser":
            done = sum(1 for c in self.calls if c[1] == "onboardUser") > 1
            body = {"done": done}
            if done:
                body["response"] = {"cloudaicompanionProject": {"id": self.project}}
            return httpx.Response(200, json=body)
        return httpx.Response(404)


def _setup(tmp_path: Path, data: dict, fake: FakeCodeAssist, monkeypatch) -> tuple[AuthStore, Refresher, Path]:
    from auth.login import google

    onboard = google.onboard
    monkeypatch.setattr(google, "onboard", lambda *a, **kw: onboard(*a, **kw, sleep=lambda s: None))
    path = tmp_path / "ag.json"
    path.write_text(json.dumps(data))
    store = AuthStore(tmp_path)
    store.scan()
    published: list[int] = []
    refresher = Refresher(store, publish=lambda: published.append(1))
    refresher.project_transport = httpx.MockTransport(fake)
    return store, refresher, path


def test_antigravity_project_found_at_first_use_and_saved(tmp_path: Path, monkeypatch):
    fake = FakeCodeAssist()
    data = {"type": "antigravity", "access_token": "at-1", "refresh_token": "rt", "expired": _expiry(3600), "email": "a@b"}
    store, refresher, path = _setup(tmp_path, data, fake, monkeypatch)
    cred = store.credentials()[0]
    assert cred.project_id == ""

    async def go():
        results = await asyncio.gather(refresher.usable(cred), refresher.usable(cred))
        again = await refresher.usable(store.credentials()[0])
        await refresher.aclose()
        return results, again

    results, again = asyncio.run(go())
    assert [r[0].project_id for r in results] == ["found-proj", "found-proj"]
    assert again[0].project_id == "found-proj"
    # Discovered once for the concurrent requests, never again.
    assert [c[1] for c in fake.calls] == ["loadCodeAssist", "onboardUser", "onboardUser"]
    assert fake.calls[0][2]["metadata"]["ideType"] == "ANTIGRAVITY"
    on_disk = load_token_file(path)
    assert on_disk.get("project_id") == "found-proj" and on_disk.get("refresh_token") == "rt"
    # The proxy's own write is not an edit on disk.
    assert not store.scan()
    assert not list(tmp_path.glob(".*.tmp"))


def test_gemini_cli_project_found_with_the_gemini_login_calls(tmp_path: Path, monkeypatch):
    fake = FakeCodeAssist("gcli-proj")
    data = {"type": "gemini", "token": {"access_token": "at-1", "refresh_token": "rt", "expiry": _expiry(3600)},
            "project_id": "", "email": "a@b"}
    store, refresher, path = _setup(tmp_path, data, fake, monkeypatch)

    async def go():
        result = await refresher.usable(store.credentials()[0])
        await refresher.aclose()
        return result

    cred, why = asyncio.run(go())
    assert (cred.project_id, why) == ("gcli-proj", "")
    assert fake.calls[0][0] == "cloudcode-pa.googleapis.com"
    assert fake.calls[0][2]["metadata"]["pluginType"] == "GEMINI"
    assert load_token_file(path).get("project_id") == "gcli-proj"


def test_project_discovery_failure_skips_the_credential_with_a_backoff(tmp_path: Path, monkeypatch):
    fake = FakeCodeAssist(fail=True)
    data = {"type": "antigravity", "access_token": "at-1", "refresh_token": "rt", "expired": _expiry(3600)}
    store, refresher, path = _setup(tmp_path, data, fake, monkeypatch)

    async def go():
        first = await refresher.usable(store.credentials()[0])
        second = await refresher.usable(store.credentials()[0])
        await refresher.aclose()
        return first, second

    (c1, why1), (c2, why2) = asyncio.run(go())
    assert c1 is None and c2 is None and "Code Assist project" in why1 and why2 == why1
    assert len(fake.calls) == 1  # not retried at every request
    assert "project_id" not in json.loads(path.read_text())
