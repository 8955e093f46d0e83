"""A fake OAuth token server for every provider the refresher talks to, on one local port.

Reached through `upstream-overrides` (see `overrides()`), it answers the refresh_token grant of
Claude (JSON body), Codex, Google (Gemini CLI, Antigravity), Kimi, Qwen, iFlow and xAI (form
bodies), Google's service-account JWT grant (Vertex), and iFlow's user-info call.

Refresh tokens rotate: each refresh returns a new refresh token and access token.
* `grace=False` (strict): the old refresh token dies at once; using it again is answered
  `400 invalid_grant` ("refresh token reused"), as a provider with reuse detection does.
* `grace=True`: the old refresh token stays valid until the new generation is first used (its
  access token presented to the upstream, or its refresh token refreshed). A client that writes
  the new refresh token to disk before it uses the new access token can therefore never be left
  with a dead refresh token on disk, whenever it is killed.

`check_upstream` is a FakeUpstream `authorize` hook: 401 for access tokens this server did not
issue or has revoked.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# The vendor token hosts, for `upstream-overrides`.
TOKEN_HOSTS = (
    "platform.claude.com",
    "console.anthropic.com",
    "auth.openai.com",
    "oauth2.googleapis.com",
    "auth.kimi.com",
    "chat.qwen.ai",
    "iflow.cn",
    "auth.x.ai",
)


@dataclass
class Pair:
    access: str
    refresh: str
    generation: int


@dataclass
class Chain:
    """One login's succession of token pairs."""

    name: str
    committed: Pair
    pending: list[Pair] = field(default_factory=list)
    dead: bool = False  # revoked: every refresh is invalid_grant


@dataclass
class Call:
    path: str
    grant_type: str
    client_id: str
    refresh_token: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeTokenServer:
    def __init__(self, *, grace: bool = False, expires_in: int = 28800, latency: float = 0.0) -> None:
        self.grace = grace
        self.expires_in = expires_in
        self.latency = latency
        self.calls: list[Call] = []
        self.active = 0  # requests being answered now
        self.max_active = 0
        self.user_info_calls = 0
        self.revoked_access: set[str] = set()
        self.public_keys: dict[str, Any] = {}  # service account email -> RSA public key
        self._chains: dict[str, Chain] = {}
        self._by_refresh: dict[str, Chain] = {}
        self._by_access: dict[str, Chain] = {}
        self._fail: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = server._handle("POST", self.path, dict(self.headers.items()), raw)
                self._reply(status, body)

            def do_GET(self) -> None:
                status, body = server._handle("GET", self.path, dict(self.headers.items()), b"")
                self._reply(status, body)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 refuses a burst of parallel refreshes

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-tokens", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def overrides(self) -> dict[str, str]:
        return {host: self.base_url for host in TOKEN_HOSTS}

    # -- scripting ---------------------------------------------------------------------------

    def issue(self, name: str) -> Pair:
        """A new login: its first token pair."""
        with self._lock:
            pair = self._pair(name, 0)
            chain = Chain(name, pair)
            self._chains[name] = chain
            self._by_refresh[pair.refresh] = chain
            self._by_access[pair.access] = chain
            return pair

    def revoke_refresh(self, name: str) -> None:
        with self._lock:
            self._chains[name].dead = True

    def revoke_access(self, access: str) -> None:
        with self._lock:
            self.revoked_access.add(access)

    def fail_next(self, status: int, body: dict[str, Any], times: int = 1) -> None:
        with self._lock:
            self._fail.extend([(status, body)] * times)

    def current(self, name: str) -> Pair:
        with self._lock:
            return self._chains[name].committed

    def refresh_calls(self, name: str | None = None) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        if name is None:
            return calls
        return [c for c in calls if (chain := self._by_refresh.get(c.refresh_token)) and chain.name == name]

    def refresh_token_usable(self, refresh: str) -> bool:
        """Whether a refresh with `refresh` would succeed now (without doing it)."""
        with self._lock:
            chain = self._by_refresh.get(refresh)
            return chain is not None and not chain.dead and refresh in self._valid_refresh(chain)

    def valid_access(self, access: str | None) -> bool:
        """Whether the upstream accepts `access`; in grace mode its first use commits it."""
        if not access:
            return False
        with self._lock:
            chain = self._by_access.get(access)
            if chain is None or access in self.revoked_access:
                return False
            if chain.committed.access == access:
                return True
            for pair in chain.pending:
                if pair.access == access:
                    self._commit(chain, pair)
                    return True
            return False

    def check_upstream(self, request: Any) -> int | None:
        """FakeUpstream.authorize hook."""
        return None if self.valid_access(request.api_key) else 401

    # -- internals ---------------------------------------------------------------------------

    def _pair(self, name: str, generation: int) -> Pair:
        n = next(self._ids)
        tag = secrets.token_hex(6)
        return Pair(f"at-{name}-{generation}-{n}-{tag}", f"rt-{name}-{generation}-{n}-{tag}", generation)

    def _valid_refresh(self, chain: Chain) -> set[str]:
        valid = {p.refresh for p in chain.pending}
        if self.grace or not chain.pending:
            valid.add(chain.committed.refresh)
        return valid

    def _commit(self, chain: Chain, pair: Pair) -> None:
        chain.committed = pair
        chain.pending = []

    def _rotate(self, refresh: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            chain = self._by_refresh.get(refresh)
            if chain is None:
                return 400, {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"}
            if chain.dead:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            if refresh not in self._valid_refresh(chain):
                return 400, {"error": "invalid_grant", "error_description": "refresh token reused"}
            for pair in chain.pending:
                if pair.refresh == refresh:
                    self._commit(chain, pair)  # using the new generation's refresh token commits it
                    break
            base = max([chain.committed.generation, *(p.generation for p in chain.pending)])
            pair = self._pair(chain.name, base + 1)
            self._by_refresh[pair.refresh] = chain
            self._by_access[pair.access] = chain
            if self.grace:
                chain.pending.append(pair)
            else:
                chain.committed = pair
                chain.pending = []
            body = {
                "access_token": pair.access,
                "refresh_token": pair.refresh,
                "expires_in": self.expires_in,
                "token_type": "Bearer",
            }
            return 200, body

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(method, target, headers, raw)
        finally:
            with self._lock:
                self.active -= 1

    def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        path = url.path
        lower = {k.lower(): v for k, v in headers.items()}
        if method == "GET" and path.endswith("/api/oauth/getUserInfo"):
            self.user_info_calls += 1
            access = dict(parse_qsl(url.query)).get("accessToken")
            if not self.valid_access(access):
                return 401, {"success": False, "message": "invalid access token"}
            # The API key: whatever the upstream accepts (here, the access token itself).
            return 200, {"success": True, "data": {"apiKey": access, "email": "user@iflow.test"}}
        if "json" in lower.get("content-type", ""):
            body = json.loads(raw or b"{}")
        else:
            body = dict(parse_qsl(raw.decode()))
        grant = str(body.get("grant_type", ""))
        refresh = str(body.get("refresh_token", ""))
        with self._lock:
            self.calls.append(Call(path, grant, str(body.get("client_id", "")), refresh, lower, body, time.monotonic()))
            failure = self._fail.pop(0) if self._fail else None
        if failure is not None:
            return failure
        if grant == "refresh_token":
            return self._rotate(refresh)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_grant(str(body.get("assertion", "")))
        return 400, {"error": "unsupported_grant_type"}

    def _jwt_grant(self, assertion: str) -> tuple[int, dict[str, Any]]:
        try:
            head, payload, signature = assertion.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return 400, {"error": "invalid_grant", "error_description": "malformed assertion"}
        key = self.public_keys.get(claims.get("iss"))
        if key is not None:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            try:
                key.verify(
                    base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                    f"{head}.{payload}".encode(),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
            except InvalidSignature:
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        name = f"sa-{claims.get('iss')}"
        pair = self.issue(name) if name not in self._chains else self._next_sa(name)
        return 200, {"access_token": pair.access, "expires_in": 3599, "token_type": "Bearer"}

    def _next_sa(self, name: str) -> Pair:
        with self._lock:
            chain = self._chains[name]
            pair = self._pair(name, chain.committed.generation + 1)
            chain.committed = pair
            self._by_access[pair.access] = chain
            return pair
