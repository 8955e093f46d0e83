"""OAuth token files serving requests through a real mitmdump, with the official SDKs: Claude,
Codex and Gemini CLI logins, on-demand and background refresh, refresh on 401, terminal refresh
failures, the auth-dir watcher, script reloads and `kill -9` during refreshes."""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from auth.tokens import format_time
from tests import clients
from tests.conftest import ROOT, Proxy
from tests.fakes.tokens import FakeTokenServer
from tests.fakes.upstream import FakeUpstream
from tests.waiting import wait_until

HOUR = 3600
SAMPLES = Path(__file__).parent / "fixtures" / "cliproxyapi-auth"
API_HOSTS = (
    "api.anthropic.com",
    "chatgpt.com",
    "cloudcode-pa.googleapis.com",
    "daily-cloudcode-pa.googleapis.com",
    "api.kimi.com",
    "portal.qwen.ai",
    "apis.iflow.cn",
)
FAST_REFRESH = ("--set", "cliproxy_refresh_interval=0.2")


def iso(offset: float) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)
    return format_time(when)


def overrides(fake: FakeUpstream, tokens: FakeTokenServer) -> dict[str, str]:
    return {**{h: fake.base_url for h in API_HOSTS}, **tokens.overrides()}


def write_token(auth: Path, name: str, data: dict) -> Path:
    auth.mkdir(parents=True, exist_ok=True)
    path = auth / name
    path.write_text(json.dumps(data, indent=2))
    return path


def claude_file(auth: Path, tokens: FakeTokenServer, name: str, expires_in: float = 8 * HOUR, **extra) -> Path:
    pair = tokens.issue(name)
    return write_token(auth, f"{name}.json", {
        "type": "claude", "access_token": pair.access, "refresh_token": pair.refresh,
        "email": f"{name}@example.com", "expired": iso(expires_in), **extra,
    })


ask_claude = functools.partial(clients.ask_claude, timeout=30)


def health(proxy: Proxy) -> dict:
    return proxy.get("/healthz").json()


@pytest.fixture(scope="module")
def tokens():
    with FakeTokenServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream, tokens: FakeTokenServer):
    fake.clear()
    fake.authorize = tokens.check_upstream
    yield
    fake.authorize = None


def start(make_proxy, fake, tokens, files, *, extra=None, args=()) -> Proxy:
    proxy = make_proxy({"upstream-overrides": overrides(fake, tokens), **(extra or {})}, start=False,
                       extra_args=args)
    auth = proxy.workdir / "auth"
    for make in files:
        make(auth)
    return proxy.start()


# -- serving with the official SDKs ----------------------------------------------------------------


def test_claude_login_serves_the_anthropic_sdk(fake, tokens, make_proxy):
    proxy = start(make_proxy, fake, tokens, [lambda a: claude_file(a, tokens, "claude-sdk")])
    client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    message = client.messages.create(
        model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert message.content[0].text == fake.text
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["authorization"] == f"Bearer {tokens.current('claude-sdk').access}"
    assert "x-api-key" not in seen.headers
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,oauth-2025-04-20"
    assert health(proxy)["auth_files"] == 1
    assert tokens.current("claude-sdk").access not in proxy.output()


def codex_file(auth: Path, tokens: FakeTokenServer, name: str = "codex-sdk") -> Path:
    pair = tokens.issue(name)
    return write_token(auth, f"{name}.json", {
        "type": "codex", "access_token": pair.access, "refresh_token": pair.refresh, "id_token": "",
        "account_id": "acct-1234", "email": "me@example.com", "expired": iso(9 * 24 * HOUR),
    })


def test_codex_login_serves_the_openai_sdk_responses(fake, tokens, make_proxy):
    proxy = start(make_proxy, fake, tokens, [lambda a: codex_file(a, tokens)])
    client = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0)

    result = client.responses.create(model="gpt-5", input="hi")
    assert result.output_text == fake.expected_stream_text()  # the upstream streamed; read whole
    seen = fake.requests[-1]
    assert seen.path == "/backend-api/codex/responses"
    assert seen.headers["authorization"] == f"Bearer {tokens.current('codex-sdk').access}"
    assert seen.headers["chatgpt-account-id"] == "acct-1234"
    sent = seen.json()
    assert sent["stream"] is True and sent["store"] is False

    events = list(client.responses.create(model="gpt-5", input="hi", stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == fake.expected_stream_text()
    assert events[-1].type == "response.completed"

    chat = client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == fake.expected_stream_text()


def gemini_cli_file(auth: Path, tokens: FakeTokenServer, name: str = "me@gmail.com-proj-1") -> Path:
    pair = tokens.issue(name)
    return write_token(auth, f"{name}.json", {
        "type": "gemini",
        "token": {"access_token": pair.access, "refresh_token": pair.refresh, "token_type": "Bearer",
                  "expiry": iso(HOUR), "token_uri": "https://oauth2.googleapis.com/token"},
        "project_id": "proj-1", "email": "me@gmail.com", "auto": False, "checked": True,
    })


def test_gemini_cli_login_serves_google_genai_through_code_assist(fake, tokens, make_proxy):
    proxy = start(make_proxy, fake, tokens, [lambda a: gemini_cli_file(a, tokens)])
    client = genai.Client(
        api_key="unused",
        http_options=genai_types.HttpOptions(
            base_url=proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    result = client.models.generate_content(model="gemini-2.5-pro", contents="hi")
    assert result.text == fake.text
    # The envelope's traceId is the answer's responseId, as Gemini CLI's converter has it.
    assert result.response_id.startswith("trace-")
    seen = fake.requests[-1]
    assert seen.path == "/v1internal:generateContent"
    assert seen.headers["authorization"] == f"Bearer {tokens.current('me@gmail.com-proj-1').access}"
    assert "x-goog-api-key" not in seen.headers
    envelope = seen.json()
    assert (envelope["model"], envelope["project"]) == ("gemini-2.5-pro", "proj-1")
    assert envelope["request"]["contents"][0]["parts"][0]["text"] == "hi"

    chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == fake.expected_stream_text()
    assert len({c.response_id for c in chunks}) == 1 and chunks[0].response_id.startswith("trace-")
    assert fake.requests[-1].path == "/v1internal:streamGenerateContent"
    assert fake.requests[-1].query == {"alt": "sse"}

    counted = client.models.count_tokens(model="gemini-2.5-pro", contents="hi")
    assert counted.total_tokens and fake.requests[-1].path == "/v1internal:countTokens"


# -- refresh -------------------------------------------------------------------------------------


def test_fifty_concurrent_requests_on_an_expiring_token_cause_one_refresh(fake, make_proxy):
    with FakeTokenServer(latency=0.5) as tokens:
        fake.authorize = tokens.check_upstream
        proxy = start(make_proxy, fake, tokens, [lambda a: claude_file(a, tokens, "claude-busy", expires_in=-30)])
        old = tokens.current("claude-busy")
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda _: ask_claude(proxy), range(50)))
        assert all(r.content[0].text == fake.text for r in results)
        new = tokens.current("claude-busy")
        assert len(tokens.refresh_calls()) == 1
        assert {r.api_key for r in fake.requests} == {new.access}
        on_disk = json.loads((proxy.workdir / "auth" / "claude-busy.json").read_text())
        assert (on_disk["access_token"], on_disk["refresh_token"]) == (new.access, new.refresh)
        assert oct(os.stat(proxy.workdir / "auth" / "claude-busy.json").st_mode & 0o777) == "0o600"
        output = proxy.output()
        for secret in (old.access, old.refresh, new.access, new.refresh):
            assert secret not in output
        assert "refreshed the token of auth file claude-busy.json" in output


def test_an_upstream_401_refreshes_and_retries_on_the_same_credential(fake, tokens, make_proxy):
    proxy = start(
        make_proxy, fake, tokens,
        [lambda a: claude_file(a, tokens, "claude-a", priority=10), lambda a: claude_file(a, tokens, "claude-b")],
    )
    revoked = tokens.current("claude-a").access
    tokens.revoke_access(revoked)  # e.g. the vendor invalidated it early
    calls_before = len(tokens.refresh_calls())
    message = ask_claude(proxy)
    assert message.content[0].text == fake.text
    new = tokens.current("claude-a").access
    assert [r.api_key for r in fake.requests] == [revoked, new]
    assert len(tokens.refresh_calls()) == calls_before + 1
    assert tokens.refresh_calls()[-1].refresh_token.startswith("rt-claude-a-")
    assert "answered 401; token refreshed, retrying on it" in proxy.output()
    # Not set aside: the next request goes to it again, without another refresh.
    ask_claude(proxy)
    assert fake.requests[-1].api_key == new and len(tokens.refresh_calls()) == calls_before + 1


def test_invalid_grant_marks_the_credential_and_stops_refreshing(fake, tokens, make_proxy):
    proxy = start(make_proxy, fake, tokens, [lambda a: claude_file(a, tokens, "claude-dead", expires_in=-30)],
                  args=FAST_REFRESH)
    tokens.revoke_refresh("claude-dead")
    path = proxy.workdir / "auth" / "claude-dead.json"
    wait_until(lambda: "cliproxy_refresh_error" in path.read_text(), 5, "the refusal recorded in the file")
    time.sleep(1.0)  # five more checks
    assert len(tokens.refresh_calls("claude-dead")) == 1
    assert json.loads(path.read_text())["cliproxy_refresh_error"]["error"] == "invalid_grant"
    with pytest.raises(anthropic.APIStatusError) as e:
        ask_claude(proxy)
    assert e.value.status_code == 503 and "log in again" in str(e.value)
    assert len(tokens.refresh_calls("claude-dead")) == 1
    assert "refused for good" in proxy.output()
    # A restart reads the mark: still no new attempt.
    proxy.stop()
    proxy.start()
    time.sleep(1.0)
    assert len(tokens.refresh_calls("claude-dead")) == 1


# -- the auth directory is live ------------------------------------------------------------------------


def test_watcher_add_modify_rename_delete_truncate_fix(fake, tokens, make_proxy):
    proxy = start(make_proxy, fake, tokens, [], args=FAST_REFRESH)
    auth = proxy.workdir / "auth"
    assert health(proxy)["auth_files"] == 0

    took = []
    path = claude_file(auth, tokens, "claude-w")
    took.append(wait_until(lambda: health(proxy)["auth_files"] == 1, 5, "added"))
    ask_claude(proxy)
    assert fake.requests[-1].api_key == tokens.current("claude-w").access

    # Modify: a prefix appears (in place, not atomically, like an editor without safe-write).
    data = json.loads(path.read_text())
    data["prefix"] = "team"
    path.write_text(json.dumps(data))
    took.append(wait_until(lambda: any(m["id"] == "team/claude-sonnet-4-5" for m in proxy.get("/v1/models").json()["data"]), 5, "modified"))
    ask_claude(proxy, "team/claude-test-1")

    # Rename.
    renamed = auth / "claude-renamed.json"
    path.rename(renamed)
    took.append(wait_until(lambda: "claude-renamed.json" in proxy.output(), 5, "renamed"))
    assert health(proxy)["auth_files"] == 1
    ask_claude(proxy)

    # Delete.
    mark = len(proxy.output())
    renamed.unlink()
    took.append(wait_until(lambda: health(proxy)["auth_files"] == 0, 5, "deleted"))
    assert "claude-renamed.json removed" in proxy.output()[mark:]
    with pytest.raises(anthropic.NotFoundError):
        ask_claude(proxy)

    # Half-written: one clear line naming the file, no token; picked up once valid.
    pair = tokens.issue("claude-late")
    late = auth / "claude-late.json"
    mark = len(proxy.output())
    late.write_text('{"type": "claude", "access_token": "' + pair.access + '", "refresh_tok')
    wait_until(lambda: "claude-late.json" in proxy.output()[mark:], 5, "the broken file reported")
    time.sleep(0.5)
    lines = [line for line in proxy.output()[mark:].splitlines() if "claude-late.json" in line]
    assert len(lines) == 1 and "not valid JSON" in lines[0]
    assert pair.access not in proxy.output()
    assert health(proxy)["auth_files"] == 0
    late.write_text(json.dumps({"type": "claude", "access_token": pair.access, "refresh_token": pair.refresh,
                                "expired": iso(8 * HOUR)}))
    took.append(wait_until(lambda: health(proxy)["auth_files"] == 1, 5, "fixed"))
    ask_claude(proxy)
    assert fake.requests[-1].api_key == pair.access
    assert max(took) < 1.0, took


def test_the_proxys_own_writes_cause_no_reload(fake, make_proxy):
    with FakeTokenServer() as tokens:
        tokens.expires_in = 31  # refreshed, it stays due: one refresh every ineffective backoff
        fake.authorize = tokens.check_upstream
        proxy = start(make_proxy, fake, tokens, [lambda a: claude_file(a, tokens, "claude-self", expires_in=-30)],
                      args=FAST_REFRESH)
        wait_until(lambda: len(tokens.refresh_calls()) == 1, 5, "refreshed")
        time.sleep(1.0)
        output = proxy.output()
        assert "changed on disk" not in output
        assert output.count("claude-self.json loaded") == 1


def test_cliproxyapi_samples_load_as_they_are(fake, tokens, make_proxy):
    def copy(auth: Path) -> None:
        shutil.copytree(SAMPLES, auth, dirs_exist_ok=True)

    proxy = start(make_proxy, fake, tokens, [copy])
    assert health(proxy)["auth_files"] == len(list(SAMPLES.glob("*.json")))
    output = proxy.output()
    assert "auth file skipped" not in output
    for path in SAMPLES.iterdir():
        assert (proxy.workdir / "auth" / path.name).read_bytes() == path.read_bytes()


# -- lifecycle -------------------------------------------------------------------------------------


def test_script_reload_leaves_exactly_one_refresh_task(fake, tokens, make_proxy, tmp_path):
    # A stand-in entry script that runs addons/cliproxy.py's code, so that touching it reloads
    # the addon exactly as touching addons/cliproxy.py would, without disturbing other proxies
    # that run from this checkout at the same time.
    entry = tmp_path / "entry.py"
    source = ROOT / "addons" / "cliproxy.py"
    entry.write_text(
        f"__file__ = {str(source)!r}\n"
        f"exec(compile(open(__file__).read(), __file__, 'exec'))\n"
    )
    proxy = make_proxy({"upstream-overrides": overrides(fake, tokens)}, start=False)
    claude_file(proxy.workdir / "auth", tokens, "claude-reload")
    command = proxy.command
    proxy.command = lambda: [str(entry) if part == str(source) else part for part in command()]
    proxy.start()
    assert health(proxy)["refresh_tasks"] == 1
    for i in range(3):
        loads = proxy.output().count("Loading script")
        future = time.time() + i + 1
        os.utime(entry, (future, future))
        wait_until(lambda n=loads: proxy.output().count("Loading script") > n, 10, "the script reloaded")
        wait_until(lambda: health(proxy)["refresh_tasks"] == 1, 5, "one refresh task")
    time.sleep(0.3)
    assert health(proxy)["refresh_tasks"] == 1
    ask_claude(proxy)
    output = proxy.output()
    assert "Traceback" not in output and "cannot be called from sync context" not in output


def test_kill_9_during_refreshes_leaves_a_usable_refresh_token_in_every_file(fake, make_proxy):
    # Grace rotation: the old refresh token dies once the new generation is used. The proxy
    # writes the new one before using it, so the file always holds a live one. Tokens live 31 s,
    # 1 s beyond the proxy's expiry margin, so traffic keeps refreshing them all through the run.
    # (Checked: a refresher that hands out the new token before the file is written fails this.)
    with FakeTokenServer(grace=True, latency=0.03, expires_in=31) as tokens:
        fake.authorize = tokens.check_upstream
        names = [f"claude-k{i:02d}" for i in range(10)]
        proxy = start(make_proxy, fake, tokens,
                      [lambda a, n=n: claude_file(a, tokens, n, expires_in=-30) for n in names],
                      args=FAST_REFRESH)
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                try:
                    httpx.post(proxy.base_url + "/v1/messages", timeout=2, headers={"anthropic-version": "2023-06-01"},
                               json={"model": "claude-test-1", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "hi"}]})
                except httpx.HTTPError:
                    time.sleep(0.02)

        workers = [threading.Thread(target=traffic, daemon=True) for _ in range(4)]
        for w in workers:
            w.start()
        rng = random.Random(1234)
        try:
            for _ in range(4):
                time.sleep(rng.uniform(0.05, 1.0))
                proxy.process.kill()  # SIGKILL: no cleanup of any kind
                proxy.process.wait()
                proxy.log.close()
                proxy.start()
            time.sleep(1.0)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=10)
        proxy.stop()
        assert len(tokens.refresh_calls()) >= len(names)
        for name in names:
            data = json.loads((proxy.workdir / "auth" / f"{name}.json").read_text())
            assert tokens.refresh_token_usable(data["refresh_token"]), name


def test_antigravity_qwen_kimi_iflow_vertex_logins_serve_requests(fake, tokens, make_proxy):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "sa@proj-v.iam.gserviceaccount.com"
    tokens.public_keys[email] = key.public_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()

    def files(auth: Path) -> None:
        def oauth(kind: str, name: str, **extra) -> None:
            pair = tokens.issue(name)
            write_token(auth, f"{name}.json", {"type": kind, "access_token": pair.access,
                                               "refresh_token": pair.refresh, "expired": iso(8 * HOUR), **extra})

        oauth("antigravity", "antigravity-me", project_id="ag-proj", prefix="ag")
        oauth("qwen", "qwen-me", resource_url="portal.qwen.ai", prefix="qw")
        oauth("kimi", "kimi-me", prefix="km")
        oauth("iflow", "iflow-me", api_key=tokens.issue("iflow-key").access, prefix="flow")
        write_token(auth, "vertex-proj-v.json", {
            "type": "vertex", "project_id": "proj-v", "location": "europe-west4", "prefix": "vx",
            "service_account": {"type": "service_account", "client_email": email, "private_key": pem,
                                "token_uri": "https://oauth2.googleapis.com/token"},
        })

    proxy = start(make_proxy, fake, tokens, [files],
                  extra={"upstream-overrides": {**overrides(fake, tokens),
                                                "europe-west4-aiplatform.googleapis.com": fake.base_url}})
    oai = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0)

    chat = oai.chat.completions.create(model="qw/qwen3-coder-plus", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == fake.text
    seen = fake.requests[-1]
    assert seen.path == "/v1/chat/completions" and seen.headers["x-dashscope-authtype"] == "qwen-oauth"
    assert seen.api_key == tokens.current("qwen-me").access

    # iFlow's lead time is 24 h: the file (8 h left) was refreshed at start, its API key renewed.
    wait_until(lambda: "refreshed the token of auth file iflow-me.json" in proxy.output(), 5, "iFlow key renewed")
    oai.chat.completions.create(model="flow/glm-4.6", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert fake.requests[-1].api_key == tokens.current("iflow-me").access

    kimi = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    kimi.messages.create(model="km/kimi-k2", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].path == "/coding/v1/messages"
    assert fake.requests[-1].json()["model"] == "k2"
    assert fake.requests[-1].api_key == tokens.current("kimi-me").access

    chat = oai.chat.completions.create(model="ag/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == fake.text
    seen = fake.requests[-1]
    assert seen.path == "/v1internal:generateContent" and seen.json()["project"] == "ag-proj"

    gem = genai.Client(api_key="unused", http_options=genai_types.HttpOptions(
        base_url=proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)))
    result = gem.models.generate_content(model="vx/gemini-2.5-flash", contents="hi")
    assert result.text == fake.text
    seen = fake.requests[-1]
    assert seen.path == "/v1/projects/proj-v/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent"
    assert seen.api_key == tokens.current(f"sa-{email}").access
    assert [c.grant_type for c in tokens.calls].count("urn:ietf:params:oauth:grant-type:jwt-bearer") == 1
    assert pem.splitlines()[1] not in proxy.output()
