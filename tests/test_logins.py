"""`cliproxy auth <provider>`: every provider's login against fake OAuth servers.

The fakes (tests/fakes/oauth.py) are reached through `upstream-overrides`, as a gateway would be.
In-process tests drive the flows with a scripted browser; the CLI tests run the real command in
a subprocess with --no-browser and play the user from another thread (following the printed
address, or pasting the redirect on stdin).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml

from auth.login import antigravity, codex, device, gemini
from auth.login.callback import CallbackServer, parse_pasted
from auth.login.console import Console
from auth.login.errors import LoginError, LoginTimeout
from auth.providers.base import jwt_claims as claims
from auth.login.pkce import PKCE, challenge_for
from auth.login.registry import PROVIDERS, login
from auth.login.session import LoginOptions, Session
from auth.tokens import load_token_file
from routing.upstream import redirect
from tests.fakes.oauth import Account, FakeOAuth, ScriptedBrowser, pkce_challenge

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake():
    server = FakeOAuth().start()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """Onboarding and slow_down waits of seconds, in milliseconds."""
    monkeypatch.setattr(gemini, "ONBOARD_INTERVAL", 0.01)
    monkeypatch.setattr(antigravity, "ONBOARD_INTERVAL", 0.01)
    monkeypatch.setattr(device, "SLOW_DOWN_STEP", 0.05)


class Run:
    """One in-process login: its session, its scripted browser, what it printed."""

    def __init__(self, fake: FakeOAuth, auth_dir: Path, browser: ScriptedBrowser | None = None, stdin: int | None = None, **options):
        options.setdefault("timeout", 15)
        options.setdefault("callback_port", free_port())
        self.err = io.StringIO()
        self.browser = browser or ScriptedBrowser()
        self.session = Session(
            auth_dir=auth_dir,
            options=LoginOptions(**options),
            rewrite=partial(redirect, overrides=fake.overrides()),
            open_url=self.browser,
            stdin=stdin,
            err=self.err,
        )

    def __call__(self, provider: str):
        with self.session:
            return login(provider, self.session)


def files(auth_dir: Path) -> list[str]:
    return sorted(p.name for p in auth_dir.iterdir()) if auth_dir.exists() else []


def rfc3339(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def assert_recent(text: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert abs((rfc3339(text) - now).total_seconds()) < 60, text


def assert_expires_in(text: str, seconds: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert abs((rfc3339(text) - now).total_seconds() - seconds) < 60, text


# -- what each provider's file must look like (CLIProxyAPI's schema, §3.2) ----------------------

def check_claude(name: str, data: dict, account: Account) -> None:
    assert name == f"claude-{account.email}.json"
    assert set(data) == {
        "type", "id_token", "access_token", "refresh_token", "last_refresh", "email", "expired", "disabled",
        "account_uuid", "organization_uuid", "organization_name", "claude_device_ids",
    }
    assert data["access_token"].startswith("at-claude-") and data["refresh_token"].startswith("rt-claude-")
    assert data["account_uuid"] == f"uuid-{account.account_id}" and data["organization_uuid"] == f"org-{account.account_id}"
    assert len(data["claude_device_ids"]) == 1 and re.fullmatch(r"[0-9a-f]{64}", data["claude_device_ids"][0])
    assert_expires_in(data["expired"], 28800)


def check_codex(name: str, data: dict, account: Account) -> None:
    digest = hashlib.sha256(account.account_id.encode()).hexdigest()[:8]
    assert name == f"codex-{digest}-{account.email}-{account.plan}.json"
    assert set(data) == {"type", "id_token", "access_token", "refresh_token", "account_id", "last_refresh", "email", "expired", "disabled"}
    assert data["account_id"] == account.account_id
    assert claims(data["id_token"])["https://api.openai.com/auth"]["chatgpt_plan_type"] == account.plan
    assert_expires_in(data["expired"], 864000)


def check_gemini(name: str, data: dict, account: Account) -> None:
    assert name == f"gemini-{account.email}-{account.auto_project}.json"
    assert set(data) == {"type", "token", "project_id", "email", "auto", "checked", "disabled"}
    assert data["project_id"] == account.auto_project and data["auto"] is False and data["checked"] is True
    token = data["token"]
    assert token["access_token"].startswith("at-gemini-") and token["refresh_token"].startswith("rt-gemini-")
    assert token["client_id"] == gemini.CLIENT_ID and token["token_uri"] == "https://oauth2.googleapis.com/token"
    assert token["scopes"] == list(gemini.SCOPES) and token["token_type"] == "Bearer"
    assert_expires_in(token["expiry"], 3599)


def check_antigravity(name: str, data: dict, account: Account) -> None:
    assert name == f"antigravity-{account.email}.json"
    assert set(data) == {"type", "access_token", "refresh_token", "expires_in", "timestamp", "expired", "email", "project_id", "disabled"}
    assert data["project_id"] == account.auto_project and data["expires_in"] == 3599
    assert abs(data["timestamp"] / 1000 - time.time()) < 60
    assert_expires_in(data["expired"], 3599)


def check_qwen(name: str, data: dict, account: Account) -> None:
    assert name == f"qwen-{account.email}.json"
    assert set(data) == {"type", "access_token", "refresh_token", "last_refresh", "resource_url", "email", "expired", "disabled"}
    assert data["resource_url"] == "portal.qwen.ai"
    assert_expires_in(data["expired"], 21600)


def check_iflow(name: str, data: dict, account: Account) -> None:
    assert re.fullmatch(rf"iflow-{re.escape(account.email)}-\d{{10}}\.json", name)
    assert set(data) == {
        "type", "access_token", "refresh_token", "last_refresh", "expired", "api_key", "email", "token_type", "scope",
        "cookie", "disabled",
    }
    assert data["api_key"].startswith("sk-iflow-") and data["token_type"] == "bearer"
    assert_expires_in(data["expired"], 172800)


def check_kimi(name: str, data: dict, account: Account) -> None:
    assert re.fullmatch(r"kimi-\d{13}\.json", name)
    assert set(data) == {"type", "access_token", "refresh_token", "token_type", "scope", "device_id", "expired", "timestamp", "disabled"}
    assert re.fullmatch(r"[0-9a-f]{32}", data["device_id"]) and data["scope"] == "kimi-code"
    assert_expires_in(data["expired"], 900)


CHECKS = {
    "claude": check_claude, "codex": check_codex, "gemini": check_gemini, "antigravity": check_antigravity,
    "qwen": check_qwen, "iflow": check_iflow, "kimi": check_kimi,
}


def account_for(provider: str, n: int) -> Account:
    # Qwen never learns the email: its file is named after the alias given with --email.
    return Account(f"{provider}-user{n}@example.com")


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_provider_logs_in_twice_into_two_files(provider, fake, tmp_path):
    auth_dir = tmp_path / "auth"
    outputs = []
    written = []
    for n in (1, 2):
        account = fake.login_as(account_for(provider, n))
        run = Run(fake, auth_dir, email=account.email if provider == "qwen" else "")
        record, saved = run(provider)
        assert not saved.replaced
        path = saved.path
        assert path.parent == auth_dir and path.name == record.file_name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = json.loads(path.read_text())
        assert data["type"] == provider and data["disabled"] is False
        if provider != "kimi":
            assert data["email"] == account.email
        if "last_refresh" in data:
            assert_recent(data["last_refresh"])
        CHECKS[provider](path.name, data, account)
        token = load_token_file(path)  # what the proxy's auth-dir store reads
        assert token.access_token and token.refresh_token and token.expiry is not None
        outputs.append(run.err.getvalue())
        written.append(path.name)
        time.sleep(0.002)  # kimi names files by the millisecond
    assert files(auth_dir) == sorted(written) and len(set(written)) == 2
    assert not any(secret in out for secret in fake.secrets for out in outputs)


def test_every_vendor_host_goes_through_upstream_overrides(fake, tmp_path):
    # Every request the flows made arrived at the fake under a vendor host's prefix.
    for provider in sorted(PROVIDERS):
        account = fake.login_as(account_for(provider, 1))
        Run(fake, tmp_path / "auth", email=account.email if provider == "qwen" else "")(provider)
    hosts = {r.host for r in fake.requests}
    assert hosts == {
        "claude.ai", "platform.claude.com", "api.anthropic.com", "auth.openai.com", "accounts.google.com",
        "oauth2.googleapis.com", "www.googleapis.com", "cloudcode-pa.googleapis.com",
        "daily-cloudcode-pa.googleapis.com", "serviceusage.googleapis.com", "chat.qwen.ai", "iflow.cn", "auth.kimi.com",
    }


def test_request_details_match_the_vendor_clients(fake, tmp_path):
    auth_dir = tmp_path / "auth"
    for provider in ("claude", "kimi", "antigravity", "gemini"):
        fake.login_as(account_for(provider, 1))
        Run(fake, auth_dir)(provider)
    claude_token = fake.requests_to("platform.claude.com", "/v1/oauth/token")[0]
    assert list(claude_token.body) == ["grant_type", "code", "redirect_uri", "client_id", "code_verifier", "state"]
    assert claude_token.headers["user-agent"].startswith("axios/")
    kimi = fake.requests_to("auth.kimi.com")
    data = json.loads(next(auth_dir.glob("kimi-*.json")).read_text())
    for r in kimi:
        if r.method == "POST":
            assert r.headers["x-msh-device-id"] == data["device_id"] and r.headers["x-msh-platform"]
    onboard = fake.requests_to("daily-cloudcode-pa.googleapis.com", "/v1internal:onboardUser")
    assert onboard and onboard[0].body["tier_id"] == "free-tier"
    assert onboard[0].headers["user-agent"].startswith("antigravity/") and onboard[0].headers["x-goog-api-client"]
    load = fake.requests_to("cloudcode-pa.googleapis.com", "/v1internal:loadCodeAssist")
    assert {r.body["metadata"].get("ideType") for r in load} == {"ANTIGRAVITY", "IDE_UNSPECIFIED"}
    gemini_onboard = [r for r in fake.requests_to("cloudcode-pa.googleapis.com", "/v1internal:onboardUser")]
    assert len(gemini_onboard) == 2  # one pending answer, then done
    assert any(r.headers["user-agent"].startswith("GeminiCLI/") for r in gemini_onboard)


def test_same_account_again_updates_its_file_and_keeps_user_settings(fake, tmp_path):
    auth_dir = tmp_path / "auth"
    fake.login_as(Account("same@example.com"))
    _, first = Run(fake, auth_dir)("claude")
    old = json.loads(first.path.read_text())
    old.update(prefix="work", priority=5, cliproxy_refresh_error="invalid_grant", disabled=True)
    first.path.write_text(json.dumps(old))
    _, second = Run(fake, auth_dir)("claude")
    assert second.path == first.path and second.replaced
    new = json.loads(second.path.read_text())
    assert new["access_token"] != old["access_token"]
    assert new["prefix"] == "work" and new["priority"] == 5  # the user's settings stay
    assert "cliproxy_refresh_error" not in new and new["disabled"] is False  # the stale state goes
    assert files(auth_dir) == [first.path.name]


def test_codex_device_code_login(fake, tmp_path):
    fake.device_min_pending = 2
    account = fake.login_as(Account("device@example.com", plan="pro"))
    run = Run(fake, tmp_path / "auth", device=True)
    _, saved = run("codex")
    data = json.loads(saved.path.read_text())
    assert data["codex_login_mode"] == "device" and data["email"] == account.email
    digest = hashlib.sha256(account.account_id.encode()).hexdigest()[:8]
    assert saved.path.name == f"codex-{digest}-device@example.com-pro.json"
    polls = fake.requests_to("auth.openai.com", "/api/accounts/deviceauth/token")
    assert len(polls) == 3  # two refused (403) while pending, then the grant
    exchange = fake.requests_to("auth.openai.com", "/oauth/token")[0]
    assert exchange.body["redirect_uri"] == "https://auth.openai.com/deviceauth/callback"
    out = run.err.getvalue()
    assert "Confirm this code there:" in out and "/auth.openai.com/codex/device" in out


@pytest.mark.parametrize("provider", ["qwen", "kimi"])
def test_device_code_pending_and_slow_down_then_success(provider, fake, tmp_path):
    fake.device_min_pending = 2
    fake.slow_down_once = True
    account = fake.login_as(account_for(provider, 1))
    # The user approves a little later, while the login is already polling.
    run = Run(fake, tmp_path / "auth", browser=ScriptedBrowser(pause=0.2), email=account.email if provider == "qwen" else "")
    started = time.monotonic()
    _, saved = run(provider)
    host = "chat.qwen.ai" if provider == "qwen" else "auth.kimi.com"
    token_path = "/api/v1/oauth2/token" if provider == "qwen" else "/api/oauth/token"
    polls = fake.requests_to(host, token_path)
    assert len(polls) >= 3  # slow_down, pending (until approved and 2 polls refused), then the token
    assert time.monotonic() - started >= 0.2
    assert "poll less often" in run.err.getvalue()
    assert saved.path.exists() and json.loads(saved.path.read_text())["type"] == provider
    if provider == "qwen":  # PKCE on a device flow: the verifier matched the challenge
        start = fake.requests_to("chat.qwen.ai", "/api/v1/oauth2/device/code")[0]
        assert pkce_challenge(polls[-1].body["code_verifier"]) == start.body["code_challenge"]


def test_device_code_expiry_ends_the_wait(fake, tmp_path):
    fake.device_expires_in = 1  # the code lives one second; nobody approves it
    fake.device_server_expiry = 60  # (and the server would not say so in time)
    fake.login_as(Account("late@example.com"))
    run = Run(fake, tmp_path / "auth", browser=ScriptedBrowser(pause=30))
    with pytest.raises(LoginTimeout, match=r"The code expired \(0:01\) before the sign-in was approved"):
        run("kimi")
    assert files(tmp_path / "auth") == []


def test_device_code_expired_token_ends_the_wait(fake, tmp_path):
    fake.device_server_expiry = 0.3  # the server says expired_token before the announced lifetime
    fake.login_as(Account("later@example.com"))
    run = Run(fake, tmp_path / "auth", browser=ScriptedBrowser(pause=30), email="later")
    with pytest.raises(LoginError, match="The code expired before it was approved; nothing was written"):
        run("qwen")
    assert files(tmp_path / "auth") == []


def test_a_redirect_with_the_wrong_state_is_rejected(fake, tmp_path):
    fake.login_as(Account("state@example.com"))
    browser = ScriptedBrowser(tamper_state=True)
    run = Run(fake, tmp_path / "auth", browser=browser)
    _, saved = run("codex")
    assert browser.callback_statuses == [400, 200]  # the forged one refused, the real one accepted
    assert "Ignored a browser redirect: its state does not match" in run.err.getvalue()
    assert saved.path.exists()


def test_only_a_wrong_state_means_no_login(fake, tmp_path):
    class ForgingBrowser(ScriptedBrowser):
        def visit(self, url):
            with httpx.Client(trust_env=False) as client:
                location = client.get(url).headers["location"]
                self.callback_statuses.append(client.get(location.replace("state=", "state=x")).status_code)

    fake.login_as(Account("forged@example.com"))
    browser = ForgingBrowser()
    with pytest.raises(LoginTimeout, match="nothing was written"):
        Run(fake, tmp_path / "auth", browser=browser, timeout=1)("claude")
    assert browser.callback_statuses == [400]
    assert files(tmp_path / "auth") == []


def test_callback_server_checks_path_state_and_code():
    server = CallbackServer(port=free_port(), path="/callback", state="s3cret", title="Test")
    with server, httpx.Client(trust_env=False) as client:
        base = f"http://127.0.0.1:{server.port}"
        assert client.get(f"{base}/elsewhere?code=c&state=s3cret").status_code == 404
        assert client.get(f"{base}/callback?code=c").status_code == 400  # no state
        assert client.get(f"{base}/callback?state=s3cret").status_code == 400  # no code
        page = client.get(f"{base}/callback?code=c&state=s3cret")
        assert page.status_code == 200 and "close this tab" in page.text
        again = client.get(f"{base}/callback?code=other&state=s3cret")
        assert again.status_code == 200 and "already finished" in again.text
    outcomes = []
    while not server.outcomes.empty():
        outcomes.append(server.outcomes.get())
    assert [type(o).__name__ for o in outcomes] == ["_Rejected", "_Rejected", "Redirect"]
    assert outcomes[-1].code == "c"


def test_the_provider_refusing_ends_the_login(fake, tmp_path):
    fake.deny = True
    fake.login_as(Account("no@example.com"))
    with pytest.raises(LoginError, match="refused the sign-in: access_denied"):
        Run(fake, tmp_path / "auth")("iflow")
    assert files(tmp_path / "auth") == []


def test_a_failed_exchange_names_the_error_but_no_secret(fake, tmp_path):
    fake.reject_codes = True
    fake.login_as(Account("bad@example.com"))
    with pytest.raises(LoginError) as caught:
        Run(fake, tmp_path / "auth")("claude")
    message = str(caught.value)
    assert "Claude token exchange failed" in message and "HTTP 400: invalid_grant" in message
    assert "upstream-overrides" in message  # it says where the request really went
    assert not any(secret in message for secret in fake.secrets)
    assert files(tmp_path / "auth") == []


def test_login_times_out_cleanly(fake, tmp_path):
    fake.login_as(Account("slow@example.com"))
    run = Run(fake, tmp_path / "auth", browser=ScriptedBrowser(pause=30), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(LoginTimeout) as caught:
        run("claude")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "Timed out after 0:01" in message and "--timeout" in message and "--no-browser" in message
    assert files(tmp_path / "auth") == []


def test_pasted_redirect_in_process(fake, tmp_path):
    fake.login_as(Account("paste@example.com"))
    read_fd, write_fd = os.pipe()
    run = Run(fake, tmp_path / "auth", stdin=read_fd, no_browser=True)

    def user() -> None:
        # Read the address the login printed, "sign in", and paste where the browser was sent.
        for _ in range(200):
            found = re.search(r"^\s+(http\S+)$", run.err.getvalue(), re.MULTILINE)
            if found:
                break
            time.sleep(0.02)
        with httpx.Client(trust_env=False) as client:
            location = client.get(found.group(1)).headers["location"]
        os.write(write_fd, b"not a url\n" + location.encode() + b"\n")

    thread = threading.Thread(target=user)
    thread.start()
    try:
        _, saved = run("gemini")
    finally:
        thread.join()
        os.close(write_fd)
        os.close(read_fd)
    assert not run.browser.visits  # --no-browser: nothing was opened
    assert "That is not a redirect address" in run.err.getvalue()
    assert json.loads(saved.path.read_text())["email"] == "paste@example.com"


def test_gemini_with_explicit_projects(fake, tmp_path):
    account = fake.login_as(Account("projects@example.com"))
    _, saved = Run(fake, tmp_path / "auth", project_id="proj-a")("gemini")
    assert saved.path.name == "gemini-projects@example.com-proj-a.json"
    assert json.loads(saved.path.read_text())["project_id"] == "proj-a"
    enabled = fake.requests_to("serviceusage.googleapis.com")
    assert [r.method for r in enabled] == ["GET", "POST"] and enabled[1].path.endswith(":enable")
    _, both = Run(fake, tmp_path / "auth", project_id="proj-a, proj-b")("gemini")
    data = json.loads(both.path.read_text())
    assert both.path.name == "gemini-projects@example.com-all.json" and data["project_id"] == "proj-a,proj-b"
    assert account.project == "proj-b"


def test_gemini_account_already_set_up_is_not_onboarded_again(fake, tmp_path):
    account = fake.login_as(Account("ready@example.com", project=None))
    account.project = "existing-proj"
    _, saved = Run(fake, tmp_path / "auth")("gemini")
    assert json.loads(saved.path.read_text())["project_id"] == "existing-proj"
    assert not fake.requests_to("cloudcode-pa.googleapis.com", "/v1internal:onboardUser")


def test_qwen_needs_a_name_for_its_file(fake, tmp_path):
    with pytest.raises(LoginError, match="--email"):
        Run(fake, tmp_path / "auth")("qwen")
    assert not fake.requests  # asked before anything was started


# -- small pieces --------------------------------------------------------------------------------

def test_pkce_s256_matches_rfc_7636():
    assert challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    pair = PKCE.new()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", pair.verifier) and pair.challenge == challenge_for(pair.verifier)
    assert PKCE.new().verifier != pair.verifier


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://localhost:1455/auth/callback?code=abc&state=xyz", {"code": "abc", "state": "xyz"}),
        ("localhost:54545/callback?code=abc&state=xyz", {"code": "abc", "state": "xyz"}),
        ("?code=abc&state=xyz", {"code": "abc", "state": "xyz"}),
        ("code=abc&state=xyz", {"code": "abc", "state": "xyz"}),
        ("abc#xyz", {"code": "abc", "state": "xyz"}),  # Claude's manual code
        ("'http://localhost/cb?code=abc%23xyz'", {"code": "abc", "state": "xyz"}),
        ("http://localhost/cb?error=access_denied&state=xyz", {"error": "access_denied", "state": "xyz"}),
        ("http://localhost/cb#code=abc&state=xyz", {"code": "abc", "state": "xyz"}),
        ("hello", None),
        ("http://localhost/cb?foo=bar", None),
        ("", None),
    ],
)
def test_parse_pasted(text, expected):
    assert parse_pasted(text) == expected


def test_codex_file_names():
    assert codex.file_name("a@b.c", "Plus", "acct-1") == f"codex-{hashlib.sha256(b'acct-1').hexdigest()[:8]}-a@b.c-plus.json"
    assert codex.file_name("a@b.c", "team_enterprise  x", "") == "codex-a@b.c-team-enterprise-x.json"
    assert codex.file_name("a@b.c", "", "") == "codex-a@b.c.json"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_countdown_is_rewritten_in_place_on_a_terminal():
    clock, out = FakeClock(), TTY()
    console = Console(out, clock=clock)
    countdown = console.countdown(clock.now + 300, "Waiting")
    clock.now += 61
    countdown.tick()
    countdown.tick()  # same second: nothing new is written
    console.say("a message")
    countdown.finish()
    text = out.getvalue()
    assert text.startswith("Waiting: 5:00 left (Ctrl-C to cancel)")
    assert text.count("\r\x1b[2KWaiting: 3:59 left") == 1
    assert "\r\x1b[2Ka message\nWaiting: 3:59 left" in text and "\n" not in text.split("a message\n")[1]


def test_countdown_with_a_prompt_redraws_above_the_cursor():
    clock, out = FakeClock(), TTY()
    countdown = Console(out, clock=clock).countdown(clock.now + 90, "Waiting", prompt="Paste: ")
    clock.now += 30
    countdown.tick()
    assert out.getvalue() == "Waiting: 1:30 left (Ctrl-C to cancel)\nPaste: \x1b7\x1b[1A\r\x1b[2KWaiting: 1:00 left (Ctrl-C to cancel)\x1b8"


def test_countdown_in_a_log_is_a_line_a_minute():
    clock, out = FakeClock(), io.StringIO()
    countdown = Console(out, clock=clock).countdown(clock.now + 150, "Waiting")
    for _ in range(150):
        clock.now += 1
        countdown.tick()
    lines = out.getvalue().splitlines()
    assert lines == ["Waiting (up to 2:30; Ctrl-C to cancel)...", "  2:00 left", "  1:00 left"]


# -- the real command ------------------------------------------------------------------------------

class Cli:
    """`cliproxy --config ... auth ...` in a subprocess, its stderr read line by line."""

    def __init__(self, tmp_path: Path, fake: FakeOAuth, *args: str) -> None:
        self.auth_dir = tmp_path / "auth"
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"auth-dir": str(self.auth_dir), "upstream-overrides": fake.overrides()}))
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routing.cli", "--config", str(config), "auth", *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.url = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("    http"):
                self.address = line.strip()
                self.url.set()

    def wait_for_address(self) -> str:
        assert self.url.wait(20), "".join(self.lines)
        return self.address

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, out, "".join(self.lines)


def test_cli_no_browser_follow_the_printed_address(fake, tmp_path):
    fake.login_as(Account("cli@example.com"))
    port = free_port()
    cli = Cli(tmp_path, fake, "claude", "--no-browser", "--callback-port", str(port), "--timeout", "30")
    with httpx.Client(trust_env=False) as client:
        location = client.get(cli.wait_for_address()).headers["location"]
        assert location.startswith(f"http://localhost:{port}/callback?")
        page = client.get(location)
    assert page.status_code == 200 and "close this tab" in page.text
    code, out, err = cli.finish()
    assert code == 0, err
    path = cli.auth_dir / "claude-cli@example.com.json"
    assert f"Saved {path}" in out and "cliproxy auth claude` again" in out and "Signed in to Claude as cli@example.com" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not any(secret in out + err for secret in fake.secrets)


def test_cli_no_browser_pasted_redirect(fake, tmp_path):
    fake.login_as(Account("pasted@example.com"))
    port = free_port()
    cli = Cli(tmp_path, fake, "codex", "--no-browser", "--callback-port", str(port), "--timeout", "30")
    with httpx.Client(trust_env=False) as client:
        location = client.get(cli.wait_for_address()).headers["location"]
    cli.proc.stdin.write(location + "\n")  # the browser could not reach the port: paste instead
    cli.proc.stdin.flush()
    code, out, err = cli.finish()
    assert code == 0, err
    assert "Or write the address the browser was sent to on stdin." in err
    assert len(list(cli.auth_dir.glob("codex-*-pasted@example.com-plus.json"))) == 1
    assert not any(secret in out + err for secret in fake.secrets)


def test_cli_device_code(fake, tmp_path):
    fake.login_as(Account("kimi@example.com"))
    cli = Cli(tmp_path, fake, "kimi", "--no-browser", "--timeout", "30")
    with httpx.Client(trust_env=False) as client:
        assert client.get(cli.wait_for_address()).status_code == 200  # the user approves
    code, out, err = cli.finish()
    assert code == 0, err
    assert "Confirm this code there:" in err
    assert len(list(cli.auth_dir.glob("kimi-*.json"))) == 1
    assert not any(secret in out + err for secret in fake.secrets)


def test_cli_timeout(fake, tmp_path):
    cli = Cli(tmp_path, fake, "iflow", "--no-browser", "--callback-port", str(free_port()), "--timeout", "1")
    code, _, err = cli.finish()
    assert code == 1
    assert "Timed out after 0:01 waiting for the iFlow sign-in; nothing was written" in err
    assert "--timeout SECONDS" in err
    assert files(cli.auth_dir) == []


def test_cli_ctrl_c_leaves_nothing(fake, tmp_path):
    cli = Cli(tmp_path, fake, "antigravity", "--no-browser", "--callback-port", str(free_port()))
    cli.wait_for_address()
    cli.proc.send_signal(signal.SIGINT)
    code, _, err = cli.finish()
    assert code == 130 and "Cancelled; nothing was written." in err
    assert "Traceback" not in err
    assert files(cli.auth_dir) == []


def test_cli_checks_its_options(fake, tmp_path):
    cli = Cli(tmp_path, fake, "claude", "--device")
    code, _, err = cli.finish()
    assert code == 2 and "--device applies to codex only" in err


def test_cli_reads_a_missing_config_as_defaults(tmp_path):
    # No config file: the defaults apply (auth-dir ~/.cli-proxy-api, here under a temporary HOME).
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "routing.cli", "--config", str(tmp_path / "absent.yaml"), "auth", "qwen"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 1
    assert "using the defaults (auth-dir ~/.cli-proxy-api)" in result.stderr and "--email" in result.stderr
    assert not (tmp_path / ".cli-proxy-api").exists()


def test_the_authorize_address_is_the_vendor_one_without_overrides():
    from auth.login import claude

    pair = PKCE.new()
    url = claude.authorize_url("http://localhost:54545/callback", "st", pair)
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "claude.ai", "/oauth/authorize")
    assert query == {
        "code": "true", "client_id": claude.CLIENT_ID, "response_type": "code",
        "redirect_uri": "http://localhost:54545/callback", "scope": claude.SCOPE,
        "code_challenge": pair.challenge, "code_challenge_method": "S256", "state": "st",
    }
