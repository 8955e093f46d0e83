"""Fake OAuth providers on one loopback port, for the `cliproxy auth` tests.

Every vendor host a login talks to is served under its own path prefix
(`http://127.0.0.1:PORT/<host>/...`), so `overrides()` is the `upstream-overrides` mapping that
sends each real host there. The fake checks what the real servers would reject (client ids,
redirect URIs bound to codes, PKCE verifiers against their challenges, client secrets, device
codes, bearer tokens) and plays the slow parts: device codes stay pending until the verification
page is visited *and* `device_min_pending` polls were refused, Code Assist onboarding stays
pending for `onboard_pending` polls.

"Signing in" is visiting the authorization page: it redirects at once, as the account set with
`login_as`, to the redirect URI with a code and the request's state. `ScriptedBrowser` does that
visit, and then follows the redirect to the login's callback server, as a browser would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOSTS = (
    "claude.ai",
    "platform.claude.com",
    "api.anthropic.com",
    "auth.openai.com",
    "accounts.google.com",
    "oauth2.googleapis.com",
    "www.googleapis.com",
    "cloudcode-pa.googleapis.com",
    "daily-cloudcode-pa.googleapis.com",
    "serviceusage.googleapis.com",
    "chat.qwen.ai",
    "iflow.cn",
    "auth.kimi.com",
)

CLIENTS = {
    "claude": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    "codex": "app_EMoamEEZ73f0CkXaXp7hrann",
    "gemini": "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
    "antigravity": "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    "qwen": "f0304373b74a44d2b584a3fb70ca9e56",
    "iflow": "10009311001",
    "kimi": "17e5f671-d194-4dfb-9706-5516cb48c098",
}
GOOGLE_SECRETS = {
    CLIENTS["gemini"]: "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",
    CLIENTS["antigravity"]: "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",
}
IFLOW_SECRET = "4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW"
CODEX_DEVICE_REDIRECT = "https://auth.openai.com/deviceauth/callback"


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _b64json(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class Account:
    email: str
    name: str = "Test User"
    account_id: str = ""  # codex chatgpt_account_id
    plan: str = "plus"  # codex plan type
    phone: str = ""
    project: str | None = None  # Code Assist project once onboarded
    auto_project: str = ""  # what onboarding without a requested project provisions

    def __post_init__(self) -> None:
        local = self.email.split("@")[0]
        self.account_id = self.account_id or f"acct-{local}"
        self.auto_project = self.auto_project or f"auto-proj-{local}"


@dataclass
class Grant:
    """An authorization code, bound to what the token call must repeat."""

    provider: str
    client_id: str
    redirect_uri: str
    account: Account
    challenge: str = ""
    used: bool = False


@dataclass
class DeviceGrant:
    provider: str
    device_code: str
    user_code: str
    account: Account | None = None  # set when the verification page is visited
    challenge: str = ""
    device_id: str = ""
    polls: int = 0
    slowed: bool = False
    issued_at: float = field(default_factory=time.monotonic)
    done: bool = False
    codex_verifier: str = ""


@dataclass
class Recorded:
    host: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakeOAuth:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: Account | None = None
        self.codes: dict[str, Grant] = {}
        self.devices: dict[str, DeviceGrant] = {}
        self.tokens: dict[str, tuple[str, Account]] = {}  # access token -> (provider, account)
        self.secrets: set[str] = set()  # every token, code and key handed out
        self.requests: list[Recorded] = []
        self.enabled_apis: set[str] = set()
        self.onboard_calls: dict[str, int] = {}
        # knobs
        self.deny = False  # the authorization page answers error=access_denied
        self.reject_codes = False  # token endpoints refuse every code (invalid_grant)
        self.device_min_pending = 1  # refused polls before an approved device code is granted
        self.device_interval: Any = 0.05
        self.device_expires_in = 600  # what the device endpoints announce
        self.device_server_expiry: float | None = None  # when they start answering expired_token (None: as announced)
        self.slow_down_once = False
        self.onboard_pending = 1  # pending onboardUser answers before done
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeOAuth:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def overrides(self) -> dict[str, str]:
        return {host: f"{self.base_url}/{host}" for host in HOSTS}

    def login_as(self, account: Account) -> Account:
        self.current = account
        return account

    def requests_to(self, host: str, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.host == host and (path is None or r.path == path)]

    # -- helpers --------------------------------------------------------------------------
    def _secret(self, prefix: str) -> str:
        value = f"{prefix}-{secrets.token_urlsafe(18)}"
        self.secrets.add(value)
        return value

    def _token(self, provider: str, account: Account) -> tuple[str, str]:
        access, refresh = self._secret(f"at-{provider}"), self._secret(f"rt-{provider}")
        self.tokens[access] = (provider, account)
        return access, refresh

    def _bearer(self, headers: dict[str, str], provider: str | tuple[str, ...]) -> Account | None:
        value = headers.get("authorization", "")
        token = value.removeprefix("Bearer ").strip()
        found = self.tokens.get(token)
        providers = (provider,) if isinstance(provider, str) else provider
        return found[1] if found and found[0] in providers else None

    def _redeem(self, code: str, provider: str, client_id: str, redirect_uri: str, verifier: str | None) -> Grant | str:
        grant = self.codes.get(code)
        if grant is None or grant.used or self.reject_codes or grant.provider != provider:
            return "invalid_grant"
        if grant.client_id != client_id:
            return "invalid_client"
        if grant.redirect_uri != redirect_uri:
            return "invalid_grant"
        if grant.challenge and (not verifier or pkce_challenge(verifier) != grant.challenge):
            return "invalid_grant"
        grant.used = True
        return grant

    def _authorize(self, provider: str, q: dict[str, str], redirect_key: str = "redirect_uri", pkce: bool = False) -> tuple[int, dict, Any]:
        redirect_uri = q.get(redirect_key, "")
        if q.get("client_id") != CLIENTS[provider]:
            return 400, {}, "unknown client_id"
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname != "localhost" or not parts.port:
            return 400, {}, "redirect_uri must be http://localhost:PORT/..."
        if pkce and (q.get("code_challenge_method") != "S256" or len(q.get("code_challenge", "")) != 43):
            return 400, {}, "PKCE S256 required"
        if not q.get("state"):
            return 400, {}, "state required"
        if self.current is None:
            return 400, {}, "nobody is signed in to the fake (call login_as)"
        if self.deny:
            target = {"error": "access_denied", "error_description": "The user said no", "state": q["state"]}
        else:
            code = self._secret(f"code-{provider}")
            self.codes[code] = Grant(provider, q["client_id"], redirect_uri, self.current, q.get("code_challenge", "") if pkce else "")
            target = {"code": code, "state": q["state"]}
        return 302, {"Location": redirect_uri + "?" + urllib.parse.urlencode(target)}, b""

    def _device_start(self, provider: str, challenge: str = "", device_id: str = "") -> DeviceGrant:
        grant = DeviceGrant(provider, self._secret(f"dc-{provider}"), f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}", challenge=challenge, device_id=device_id)
        self.devices[grant.device_code] = grant
        return grant

    def _approve(self, provider: str, user_code: str | None) -> bool:
        for grant in reversed(list(self.devices.values())):
            if grant.provider == provider and grant.account is None and (user_code is None or grant.user_code == user_code):
                grant.account = self.current
                return True
        return False

    def _device_state(self, grant: DeviceGrant) -> str | None:
        """An RFC 8628 error while the grant cannot be redeemed yet, else None."""
        grant.polls += 1
        expiry = self.device_expires_in if self.device_server_expiry is None else self.device_server_expiry
        if time.monotonic() - grant.issued_at > expiry:
            return "expired_token"
        if self.slow_down_once and not grant.slowed:
            grant.slowed = True
            return "slow_down"
        if grant.account is None or grant.polls <= self.device_min_pending:
            return "authorization_pending"
        return None

    # -- routes ---------------------------------------------------------------------------
    def route(self, host: str, method: str, path: str, q: dict[str, str], headers: dict[str, str], form: dict[str, str], body: Any) -> tuple[int, dict, Any]:
        key = (host, method, path)
        # Claude
        if key == ("claude.ai", "GET", "/oauth/authorize"):
            if q.get("response_type") != "code" or q.get("code") != "true":
                return 400, {}, "bad request"
            return self._authorize("claude", q, pkce=True)
        if key == ("platform.claude.com", "POST", "/v1/oauth/token"):
            if not isinstance(body, dict) or body.get("grant_type") != "authorization_code" or not body.get("state"):
                return 400, {}, {"error": "invalid_request"}
            grant = self._redeem(body.get("code", ""), "claude", body.get("client_id", ""), body.get("redirect_uri", ""), body.get("code_verifier"))
            if isinstance(grant, str):
                return 400, {}, {"error": grant, "error_description": "Invalid authorization code"}
            access, refresh = self._token("claude", grant.account)
            return 200, {}, {
                "token_type": "Bearer", "access_token": access, "refresh_token": refresh, "expires_in": 28800,
                "scope": "user:inference user:profile",
                "organization": {"uuid": f"org-{grant.account.account_id}", "name": f"{grant.account.name}'s Organization"},
                "account": {"uuid": f"uuid-{grant.account.account_id}", "email_address": grant.account.email},
            }
        if key == ("api.anthropic.com", "GET", "/api/oauth/profile"):
            account = self._bearer(headers, "claude")
            if account is None:
                return 401, {}, {"error": {"type": "authentication_error", "message": "bad token"}}
            return 200, {}, {
                "account": {"uuid": f"uuid-{account.account_id}", "email": account.email, "display_name": account.name},
                "organization": {"uuid": f"org-{account.account_id}", "name": f"{account.name}'s Organization"},
            }
        if key == ("api.anthropic.com", "GET", "/api/oauth/claude_cli/roles"):
            return (200, {}, {"roles": []}) if self._bearer(headers, "claude") else (401, {}, {})
        # Codex
        if key == ("auth.openai.com", "GET", "/oauth/authorize"):
            if q.get("response_type") != "code" or "offline_access" not in q.get("scope", ""):
                return 400, {}, "bad request"
            return self._authorize("codex", q, pkce=True)
        if key == ("auth.openai.com", "POST", "/oauth/token"):
            if form.get("grant_type") != "authorization_code":
                return 400, {}, {"error": "unsupported_grant_type"}
            grant = self._redeem(form.get("code", ""), "codex", form.get("client_id", ""), form.get("redirect_uri", ""), form.get("code_verifier"))
            if isinstance(grant, str):
                return 400, {}, {"error": grant}
            access, refresh = self._token("codex", grant.account)
            claims = {
                "email": grant.account.email, "email_verified": True, "sub": f"auth0|{grant.account.account_id}",
                "https://api.openai.com/auth": {"chatgpt_account_id": grant.account.account_id, "chatgpt_plan_type": grant.account.plan},
            }
            id_token = _b64json({"alg": "RS256", "typ": "JWT"}) + "." + _b64json(claims) + "." + self._secret("sig")
            self.secrets.add(id_token)
            return 200, {}, {"id_token": id_token, "access_token": access, "refresh_token": refresh, "expires_in": 864000, "token_type": "Bearer"}
        if key == ("auth.openai.com", "POST", "/api/accounts/deviceauth/usercode"):
            if not isinstance(body, dict) or body.get("client_id") != CLIENTS["codex"]:
                return 400, {}, {"error": "invalid_client"}
            grant = self._device_start("codex")
            return 200, {}, {"device_auth_id": grant.device_code, "user_code": grant.user_code, "interval": str(self.device_interval)}
        if key == ("auth.openai.com", "POST", "/api/accounts/deviceauth/token"):
            grant = self.devices.get(body.get("device_auth_id", "") if isinstance(body, dict) else "")
            if grant is None or grant.user_code != body.get("user_code"):
                return 400, {}, {"error": "invalid_request"}
            if self._device_state(grant) is not None:
                return 403, {}, {"error": {"message": "pending"}}
            verifier = self._secret("dv")
            code = self._secret("code-codex-device")
            self.codes[code] = Grant("codex", CLIENTS["codex"], CODEX_DEVICE_REDIRECT, grant.account, pkce_challenge(verifier))
            return 200, {}, {"authorization_code": code, "code_verifier": verifier, "code_challenge": pkce_challenge(verifier)}
        if key == ("auth.openai.com", "GET", "/codex/device"):
            return (200, {}, "approved") if self._approve("codex", None) else (404, {}, "no pending device")
        # Google
        if key == ("accounts.google.com", "GET", "/o/oauth2/v2/auth"):
            provider = next((p for p in ("gemini", "antigravity") if CLIENTS[p] == q.get("client_id")), None)
            if provider is None or q.get("access_type") != "offline" or q.get("prompt") != "consent" or "cloud-platform" not in q.get("scope", ""):
                return 400, {}, "bad request"
            return self._authorize(provider, q)
        if key == ("oauth2.googleapis.com", "POST", "/token"):
            client_id = form.get("client_id", "")
            if GOOGLE_SECRETS.get(client_id) != form.get("client_secret") or form.get("grant_type") != "authorization_code":
                return 401, {}, {"error": "invalid_client", "error_description": "Unauthorized"}
            provider = "gemini" if client_id == CLIENTS["gemini"] else "antigravity"
            grant = self._redeem(form.get("code", ""), provider, client_id, form.get("redirect_uri", ""), None)
            if isinstance(grant, str):
                return 400, {}, {"error": grant, "error_description": "Bad Request"}
            access, refresh = self._token(provider, grant.account)
            return 200, {}, {"access_token": access, "expires_in": 3599, "refresh_token": refresh, "scope": "openid", "token_type": "Bearer", "id_token": self._secret("gid")}
        if host == "www.googleapis.com" and method == "GET" and path in ("/oauth2/v1/userinfo", "/oauth2/v2/userinfo"):
            account = self._bearer(headers, ("gemini", "antigravity"))
            if account is None:
                return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}}
            return 200, {}, {"id": "1234", "email": account.email, "verified_email": True, "name": account.name}
        if host in ("cloudcode-pa.googleapis.com", "daily-cloudcode-pa.googleapis.com") and method == "POST":
            account = self._bearer(headers, ("gemini", "antigravity"))
            if account is None:
                return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}}
            if path == "/v1internal:loadCodeAssist":
                tiers = [{"id": "free-tier", "isDefault": True}, {"id": "legacy-tier"}]
                if account.project:
                    return 200, {}, {"currentTier": {"id": "free-tier"}, "allowedTiers": tiers, "cloudaicompanionProject": account.project}
                return 200, {}, {"allowedTiers": tiers}
            if path == "/v1internal:onboardUser":
                if not (body.get("tierId") or body.get("tier_id")):
                    return 400, {}, {"error": {"code": 400, "message": "tier required", "status": "INVALID_ARGUMENT"}}
                calls = self.onboard_calls[account.email] = self.onboard_calls.get(account.email, 0) + 1
                if calls <= self.onboard_pending:
                    return 200, {}, {"name": f"operations/onboard-{calls}", "done": False}
                self.onboard_calls[account.email] = 0
                project = body.get("cloudaicompanionProject") or account.auto_project
                account.project = project
                return 200, {}, {"name": "operations/onboard", "done": True, "response": {"cloudaicompanionProject": {"id": project, "name": project}}}
        if host == "serviceusage.googleapis.com" and path.startswith("/v1/projects/"):
            if self._bearer(headers, "gemini") is None:
                return 401, {}, {"error": {"code": 401, "message": "Invalid Credentials"}}
            project = path.split("/")[3]
            if method == "GET":
                return 200, {}, {"name": path, "state": "ENABLED" if project in self.enabled_apis else "DISABLED"}
            if method == "POST" and path.endswith(":enable"):
                self.enabled_apis.add(project)
                return 200, {}, {"name": "operations/enable", "done": True}
        # Qwen
        if key == ("chat.qwen.ai", "POST", "/api/v1/oauth2/device/code"):
            if form.get("client_id") != CLIENTS["qwen"] or form.get("code_challenge_method") != "S256" or len(form.get("code_challenge", "")) != 43:
                return 400, {}, {"error": "invalid_request"}
            grant = self._device_start("qwen", challenge=form["code_challenge"])
            page = "https://chat.qwen.ai/authorize"
            return 200, {}, {
                "device_code": grant.device_code, "user_code": grant.user_code, "verification_uri": page,
                "verification_uri_complete": f"{page}?user_code={grant.user_code}&client=qwen-code",
                "expires_in": self.device_expires_in, "interval": self.device_interval,
            }
        if key == ("chat.qwen.ai", "POST", "/api/v1/oauth2/token"):
            grant = self.devices.get(form.get("device_code", ""))
            if grant is None or form.get("client_id") != CLIENTS["qwen"] or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code":
                return 400, {}, {"error": "invalid_grant"}
            if pkce_challenge(form.get("code_verifier", "")) != grant.challenge:
                return 400, {}, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            if error := self._device_state(grant):
                return 400, {}, {"error": error}
            if grant.done:
                return 400, {}, {"error": "invalid_grant"}
            grant.done = True
            access, refresh = self._token("qwen", grant.account)
            return 200, {}, {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "resource_url": "portal.qwen.ai", "expires_in": 21600}
        if key == ("chat.qwen.ai", "GET", "/authorize"):
            return (200, {}, "approved") if self._approve("qwen", q.get("user_code")) else (404, {}, "unknown code")
        # iFlow
        if key == ("iflow.cn", "GET", "/oauth"):
            if q.get("loginMethod") != "phone":
                return 400, {}, "bad request"
            return self._authorize("iflow", q, redirect_key="redirect")
        if key == ("iflow.cn", "POST", "/oauth/token"):
            basic = "Basic " + base64.b64encode(f"{CLIENTS['iflow']}:{IFLOW_SECRET}".encode()).decode()
            if headers.get("authorization") != basic or form.get("client_secret") != IFLOW_SECRET:
                return 401, {}, {"error": "invalid_client"}
            grant = self._redeem(form.get("code", ""), "iflow", form.get("client_id", ""), form.get("redirect_uri", ""), None)
            if isinstance(grant, str):
                return 400, {}, {"error": grant}
            access, refresh = self._token("iflow", grant.account)
            return 200, {}, {"access_token": access, "refresh_token": refresh, "expires_in": 172800, "token_type": "bearer", "scope": "read"}
        if key == ("iflow.cn", "GET", "/api/oauth/getUserInfo"):
            found = self.tokens.get(q.get("accessToken", ""))
            if found is None or found[0] != "iflow":
                return 200, {}, {"success": False, "message": "invalid token"}
            account = found[1]
            return 200, {}, {"success": True, "data": {"apiKey": self._secret("sk-iflow"), "email": account.email, "phone": account.phone}}
        # Kimi
        if key == ("auth.kimi.com", "POST", "/api/oauth/device_authorization"):
            if form.get("client_id") != CLIENTS["kimi"] or headers.get("x-msh-platform") is None or not headers.get("x-msh-device-id"):
                return 400, {}, {"error": "invalid_request"}
            grant = self._device_start("kimi", device_id=headers["x-msh-device-id"])
            return 200, {}, {
                "device_code": grant.device_code, "user_code": grant.user_code,
                "verification_uri": "https://auth.kimi.com/device",
                "verification_uri_complete": f"https://auth.kimi.com/device?user_code={grant.user_code}",
                "expires_in": self.device_expires_in, "interval": self.device_interval,
            }
        if key == ("auth.kimi.com", "POST", "/api/oauth/token"):
            grant = self.devices.get(form.get("device_code", ""))
            if grant is None or form.get("client_id") != CLIENTS["kimi"] or grant.device_id != headers.get("x-msh-device-id"):
                return 400, {}, {"error": "invalid_grant"}
            if error := self._device_state(grant):
                return 200, {}, {"error": error, "error_description": "pending"}  # Kimi: 200 while pending
            if grant.done:
                return 400, {}, {"error": "invalid_grant"}
            grant.done = True
            access, refresh = self._token("kimi", grant.account)
            return 200, {}, {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 900, "scope": "kimi-code"}
        if key == ("auth.kimi.com", "GET", "/device"):
            return (200, {}, "approved") if self._approve("kimi", q.get("user_code")) else (404, {}, "unknown code")
        return 404, {}, {"error": "not_found", "error_description": f"{method} {host}{path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                _, host, rest = parts.path.split("/", 2) if parts.path.count("/") >= 2 else ("", "", "")
                path = "/" + rest
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                form: dict[str, str] = {}
                body: Any = None
                if "json" in headers.get("content-type", "") and raw:
                    body = json.loads(raw)
                elif raw:
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                q = dict(urllib.parse.parse_qsl(parts.query))
                with fake.lock:
                    fake.requests.append(Recorded(host, self.command, path, q, headers, body if body is not None else form))
                    status, extra, payload = fake.route(host, self.command, path, q, headers, form, body if body is not None else {})
                if isinstance(payload, (dict, list)):
                    data, ctype = json.dumps(payload).encode(), "application/json"
                else:
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    ctype = "text/html; charset=utf-8"
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class ScriptedBrowser:
    """Stands in for `webbrowser.open`: visits the page as the fake's signed-in account and
    follows the provider's redirect to the login's callback server.

    `tamper_state` sends the redirect with another state first (a forged or stale redirect);
    `pause` visits from a thread after that many seconds (the user takes a while)."""

    def __init__(self, *, tamper_state: bool = False, pause: float = 0.0) -> None:
        self.tamper_state = tamper_state
        self.pause = pause
        self.visits: list[str] = []
        self.callback_statuses: list[int] = []
        self.errors: list[BaseException] = []

    def __call__(self, url: str) -> bool:
        if self.pause:
            threading.Thread(target=self._visit_later, args=(url,), daemon=True).start()
        else:
            self.visit(url)
        return True

    def _visit_later(self, url: str) -> None:
        time.sleep(self.pause)
        try:
            self.visit(url)
        except BaseException as e:
            self.errors.append(e)

    def visit(self, url: str) -> None:
        self.visits.append(url)
        with httpx.Client(timeout=10, trust_env=False) as client:
            page = client.get(url)
            location = page.headers.get("location")
            if page.status_code != 302 or not location:
                return  # a device-code page: the visit itself approved
            if self.tamper_state:
                parts = urllib.parse.urlsplit(location)
                query = dict(urllib.parse.parse_qsl(parts.query))
                query["state"] = "forged-" + query.get("state", "")
                forged = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
                self.callback_statuses.append(client.get(forged).status_code)
            self.callback_statuses.append(client.get(location).status_code)

