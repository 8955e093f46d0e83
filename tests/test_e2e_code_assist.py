"""Gemini CLI signed in with a Google account, intercepted through mitmdump's regular proxy: its
Code Assist calls (`cloudcode-pa.googleapis.com/v1internal:{action}`) served by the pool.

The real Gemini CLI cannot sign in to Google offline, so an httpx client plays it: the
mitmproxy CA trusted, HTTPS_PROXY set, the CLI's own bearer token, body and headers as Gemini
CLI 0.61 writes them (packages/core/src/code_assist/server.ts, converter.ts). cloudcode-pa is
pointed at the fake upstream with `upstream-overrides`, so what the CLI's own account would have
received is recorded too.
"""

from __future__ import annotations

import datetime
import json
import ssl

import httpx
import pytest

from auth.tokens import format_time
from tests.conftest import vendor_overrides
from tests.fakes.tokens import FakeTokenServer
from tests.fakes.upstream import FakeUpstream

CODE_ASSIST = "https://cloudcode-pa.googleapis.com/v1internal"
POOL_GEMINI = "AIza-pool-code-assist-GGGG"
POOL_CLAUDE = "sk-ant-pool-code-assist-CCCC"
POOL_PROJECT = "pool-project-7"
CLI_PROJECT = "cli-own-project"
USER_AGENT = "GeminiCLI/0.61.0/gemini-2.5-pro (linux; x64)"


@pytest.fixture(scope="module")
def tokens():
    with FakeTokenServer() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, tokens: FakeTokenServer, make_module_proxy):
    proxy = make_module_proxy(
        {
            # gemini-2.5-flash: a Gemini API key; gemini-routed-to-claude: a Claude key;
            # every other gemini-*: the Gemini CLI login below, but for gemini-unpooled-*.
            "gemini-api-key": [{"api-key": POOL_GEMINI, "models": [{"name": "gemini-2.5-flash"}]}],
            "claude-api-key": [
                {"api-key": POOL_CLAUDE, "models": [{"name": "claude-test-1", "alias": "gemini-routed-to-claude"}]}
            ],
            "upstream-overrides": {
                **vendor_overrides(fake),
                "cloudcode-pa.googleapis.com": fake.base_url,
                **tokens.overrides(),
            },
        },
        start=False,
    )
    pair = tokens.issue("pool-login")
    expiry = format_time(datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    auth = proxy.workdir / "auth"
    auth.mkdir(parents=True, exist_ok=True)
    (auth / "pool@gmail.com-pool.json").write_text(json.dumps({
        "type": "gemini",
        "token": {"access_token": pair.access, "refresh_token": pair.refresh, "token_type": "Bearer",
                  "expiry": expiry, "token_uri": "https://oauth2.googleapis.com/token"},
        "project_id": POOL_PROJECT, "email": "pool@gmail.com", "auto": False, "checked": True,
        "excluded_models": ["gemini-2.5-flash", "gemini-routed-*", "gemini-unpooled-*"],
    }))
    return proxy.start()


@pytest.fixture(scope="module")
def cli_token(tokens: FakeTokenServer) -> str:
    """The Gemini CLI's own Google access token (valid at the fake, like the pool's)."""
    return tokens.issue("the-cli-own").access


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream, tokens: FakeTokenServer):
    fake.clear()
    # Code Assist checks Google tokens; the Gemini API and Anthropic fakes take any key.
    fake.authorize = lambda r: tokens.check_upstream(r) if r.path.startswith("/v1internal") else None
    yield
    fake.authorize = None


@pytest.fixture
def cli(proxy, cli_token):
    """The Gemini CLI's HTTP client: through the proxy, trusting mitmproxy's CA."""
    verify = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    headers = {"authorization": f"Bearer {cli_token}", "user-agent": USER_AGENT, "content-type": "application/json"}
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.proxy_port}", verify=verify, headers=headers, timeout=30) as c:
        yield c


def envelope(model: str) -> bytes:
    """A `:generateContent` / `:streamGenerateContent` body as Gemini CLI's JSON.stringify writes it."""
    return json.dumps({
        "model": model,
        "project": CLI_PROJECT,
        "user_prompt_id": "a1b2c3########0",
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "hi ✓"}]}],
            "systemInstruction": {"role": "user", "parts": [{"text": "You are Gemini CLI."}]},
            "generationConfig": {"temperature": 0, "topP": 1, "thinkingConfig": {"includeThoughts": True}},
            "session_id": "3f9d2c1e-7a5b-4c3d-9e8f-0a1b2c3d4e5f",
        },
    }, ensure_ascii=False, separators=(",", ":")).encode()


def count_body(model: str) -> bytes:
    return json.dumps({"request": {"model": f"models/{model}", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}},
                      separators=(",", ":")).encode()


def sse_events(body: bytes) -> list[dict]:
    """Gemini CLI's reader: `data: ` lines, a blank line ending each event."""
    events, lines = [], []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            lines.append(line[6:].strip())
        elif line == "" and lines:
            events.append(json.loads("\n".join(lines)))
            lines = []
    return events


def text_of(events: list[dict]) -> str:
    return "".join(p.get("text", "") for e in events for c in e["response"].get("candidates", [])
                   for p in c.get("content", {}).get("parts", []))


# -- served by a Gemini API key ------------------------------------------------------------------


def test_generate_content_served_by_a_gemini_api_key(cli, fake, cli_token):
    sent = envelope("gemini-2.5-flash")
    r = cli.post(f"{CODE_ASSIST}:generateContent", content=sent)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"response", "traceId"}
    assert answer["response"]["candidates"][0]["content"]["parts"][0]["text"] == fake.text
    assert answer["traceId"] == answer["response"]["responseId"]  # Gemini CLI's responseId
    (seen,) = fake.requests
    assert (seen.path, seen.api_key) == ("/v1beta/models/gemini-2.5-flash:generateContent", POOL_GEMINI)
    inner = json.loads(sent)["request"]
    del inner["session_id"]  # Code Assist only: the Gemini API rejects it
    assert seen.json() == inner
    assert cli_token not in repr(seen.headers) and "authorization" not in seen.headers
    assert seen.headers["user-agent"] == USER_AGENT


def test_stream_generate_content_served_by_a_gemini_api_key(cli, fake):
    with cli.stream("POST", f"{CODE_ASSIST}:streamGenerateContent", params={"alt": "sse"},
                    content=envelope("gemini-2.5-flash")) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read())
    assert len(events) == fake.stream_events
    assert all(set(e) == {"response", "traceId"} for e in events)
    assert text_of(events) == fake.expected_stream_text()
    assert events[-1]["response"]["candidates"][0]["finishReason"] == "STOP"
    (seen,) = fake.requests
    assert (seen.path, seen.query, seen.api_key) == (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"alt": "sse"}, POOL_GEMINI)


def test_count_tokens_served_by_a_gemini_api_key(cli, fake):
    r = cli.post(f"{CODE_ASSIST}:countTokens", content=count_body("gemini-2.5-flash"))
    assert r.status_code == 200
    (seen,) = fake.requests
    assert (seen.path, seen.api_key) == ("/v1beta/models/gemini-2.5-flash:countTokens", POOL_GEMINI)
    assert seen.json() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert r.json() == {"totalTokens": max(1, len(seen.body) // 4)}


def test_an_upstream_error_reaches_the_cli_in_googles_shape(cli, fake):
    fake.fail(POOL_GEMINI, 400, times=1)
    r = cli.post(f"{CODE_ASSIST}:generateContent", content=envelope("gemini-2.5-flash"))
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "Scripted failure" in error["message"]


# -- served by a Gemini CLI login of the pool ------------------------------------------------------


def test_generate_content_served_by_a_code_assist_login(cli, fake, tokens):
    sent = envelope("gemini-2.5-pro")
    r = cli.post(f"{CODE_ASSIST}:generateContent", content=sent)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["response"]["candidates"][0]["content"]["parts"][0]["text"] == fake.text
    assert answer["traceId"].startswith("trace-")  # Code Assist's own envelope, as it sent it
    (seen,) = fake.requests
    assert seen.path == "/v1internal:generateContent" and seen.query == {}
    assert seen.headers["authorization"] == f"Bearer {tokens.current('pool-login').access}"
    assert seen.body == sent.replace(f'"{CLI_PROJECT}"'.encode(), f'"{POOL_PROJECT}"'.encode())
    assert seen.headers["user-agent"] == USER_AGENT


def test_stream_generate_content_served_by_a_code_assist_login(cli, fake, tokens):
    sent = envelope("gemini-2.5-pro")
    with cli.stream("POST", f"{CODE_ASSIST}:streamGenerateContent", params={"alt": "sse"}, content=sent) as r:
        assert r.status_code == 200
        events = sse_events(r.read())
    assert text_of(events) == fake.expected_stream_text()
    assert len({e["traceId"] for e in events}) == 1
    (seen,) = fake.requests
    assert (seen.path, seen.query) == ("/v1internal:streamGenerateContent", {"alt": "sse"})
    assert seen.api_key == tokens.current("pool-login").access
    assert seen.body == sent.replace(f'"{CLI_PROJECT}"'.encode(), f'"{POOL_PROJECT}"'.encode())


def test_count_tokens_served_by_a_code_assist_login(cli, fake, tokens):
    sent = count_body("gemini-2.5-pro")
    r = cli.post(f"{CODE_ASSIST}:countTokens", content=sent)
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    (seen,) = fake.requests
    assert (seen.path, seen.body) == ("/v1internal:countTokens", sent)
    assert seen.api_key == tokens.current("pool-login").access


# -- served by another provider -----------------------------------------------------------------


def test_a_model_routed_to_claude_is_translated_and_wrapped(cli, fake):
    r = cli.post(f"{CODE_ASSIST}:generateContent", content=envelope("gemini-routed-to-claude"))
    assert r.status_code == 200, r.text
    assert r.json()["response"]["candidates"][0]["content"]["parts"][0]["text"] == fake.text
    with cli.stream("POST", f"{CODE_ASSIST}:streamGenerateContent", params={"alt": "sse"},
                    content=envelope("gemini-routed-to-claude")) as s:
        events = sse_events(s.read())
    assert text_of(events) == fake.expected_stream_text()
    assert all("response" in e for e in events)
    assert [(q.vendor, q.path, q.api_key) for q in fake.requests] == [("anthropic", "/v1/messages", POOL_CLAUDE)] * 2
    sent = fake.requests[0].json()
    assert sent["model"] == "claude-test-1"
    assert sent["system"] == [{"type": "text", "text": "You are Gemini CLI."}]


# -- what the pool does not serve --------------------------------------------------------------------


def test_the_accounts_own_calls_pass_through_untouched(cli, fake, cli_token):
    sent = json.dumps({"cloudaicompanionProject": CLI_PROJECT, "metadata": {
        "ideType": "IDE_UNSPECIFIED", "platform": "LINUX_AMD64", "pluginType": "GEMINI",
        "duetProject": CLI_PROJECT}}).encode()
    r = cli.post(f"{CODE_ASSIST}:loadCodeAssist", content=sent)
    assert r.status_code == 200
    assert r.json()["cloudaicompanionProject"] == "fake-project"
    (seen,) = fake.requests
    assert (seen.path, seen.body) == ("/v1internal:loadCodeAssist", sent)
    assert seen.headers["authorization"] == f"Bearer {cli_token}"
    assert seen.headers["user-agent"] == USER_AGENT


def test_a_model_no_credential_serves_passes_through_with_the_clis_token(cli, fake, cli_token, proxy):
    sent = envelope("gemini-unpooled-1")
    r = cli.post(f"{CODE_ASSIST}:generateContent", content=sent)
    assert r.status_code == 200
    (seen,) = fake.requests
    assert (seen.path, seen.body) == ("/v1internal:generateContent", sent)  # its own project too
    assert seen.headers["authorization"] == f"Bearer {cli_token}"
    assert "no pool credential serves 'gemini-unpooled-1'" in proxy.output()


# -- the local listener ----------------------------------------------------------------------------------


def test_the_listener_serves_code_assist_calls_too(proxy, fake):
    r = httpx.post(f"{proxy.base_url}/v1internal:generateContent", content=envelope("gemini-2.5-flash"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["candidates"][0]["content"]["parts"][0]["text"] == fake.text
    assert fake.requests[-1].api_key == POOL_GEMINI
    assert httpx.post(f"{proxy.base_url}/v1internal:loadCodeAssist", content=b"{}", timeout=30).status_code == 404
