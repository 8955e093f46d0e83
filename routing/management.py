"""The management API's decisions, apart from HTTP (addons/management.py serves them).

Who may call it (CLIProxyAPI's rules: a `remote-management.secret-key`, loopback callers only
unless `allow-remote`), what each credential's state is, what the config looks like with its
secrets masked, and which auth-file names and uploads are acceptable.

At rest the secret is a bcrypt hash, as CLIProxyAPI keeps it: a plain-text key in config.yaml
is replaced by its hash on load (`hash_secret_in_text`, the one line changed so the file's
comments and layout stay). A presented key is checked against the hash once (bcrypt is slow on
purpose), then remembered as an HMAC under a key drawn at start and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from auth.credential import Credential
from auth.store import credential_from_token
from auth.tokens import TokenFile, TokenFileError, parse_token_file, shown
from routing.config import Config, RemoteManagement

PREFIX = "/v0/management"
SESSION_COOKIE = "cliproxy_session"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 64
# CLIProxyAPI's brute-force guard: five failures ban an address for 30 minutes. Applied to
# remote addresses only here, so that a mistyped key cannot lock the local user out.
MAX_FAILURES = 5
BAN_SECONDS = 30 * 60.0
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_NAME_BYTES = 255
HOW_TO_ENABLE = "set remote-management.secret-key in config.yaml (it applies without a restart)"


class ManagementError(Exception):
    """A request the management API refuses: the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- who may call ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether a peer address (as the socket reports it) is this machine's loopback."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The management key a request carries (`headers` with lower-case names): `X-Management-Key`,
    or `Authorization: Bearer <key>` (a bare value too, as CLIProxyAPI accepts)."""
    if value := headers.get("x-management-key"):
        return value.strip()
    if auth := headers.get("authorization"):
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else auth.strip()
    return None


def session_cookie(headers: Mapping[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


def _matches(key: str | None, hashed: bytes) -> bool:
    if key is None:
        return False
    try:
        return bcrypt.checkpw(key.encode("utf-8", "surrogateescape"), hashed)
    except ValueError:  # not a hash bcrypt can read
        return False


def hash_secret(secret: str) -> str:
    return bcrypt.hashpw(secret.encode("utf-8", "surrogateescape"), bcrypt.gensalt(10)).decode()


def hash_secret_in_text(text: str, secret: str, hashed: str) -> str | None:
    """config.yaml's text with `remote-management.secret-key`'s plain value replaced by `hashed`,
    every other byte as it was; None when that value is not found on one line of its own."""
    lines = text.splitlines(keepends=True)
    in_section = False
    found: list[int] = []
    for index, line in enumerate(lines):
        if line.strip() and not line[0].isspace():
            in_section = line.startswith("remote-management:")
            continue
        match = _SECRET_LINE.match(line)
        if in_section and match and _unquoted(match.group("value")) == secret:
            found.append(index)
    if len(found) != 1:
        return None
    match = _SECRET_LINE.match(lines[found[0]])
    assert match is not None
    end = "\n" if lines[found[0]].endswith("\n") else ""
    lines[found[0]] = f'{match.group("indent")}secret-key: "{hashed}"{match.group("rest")}{end}'
    return "".join(lines)


_SECRET_LINE = re.compile(
    r"""^(?P<indent>\s+)secret-key:[ \t]*(?P<value>"[^"]*"|'[^']*'|[^#\s](?:[^#\n]*[^#\s])?)?(?P<rest>[ \t]*(?:\#.*)?)\r?\n?$"""
)


def _unquoted(value: str | None) -> str:
    if not value:
        return ""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value.strip()


class Gate:
    """Admission to the management API and the status page, and the status page's sessions."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pepper = secrets.token_bytes(32)
        self._digest: bytes | None = None  # of the secret in force, once known
        self._bcrypt: bytes | None = None  # the secret's hash at rest, when the config holds one
        self._known: str | None = None  # the key a caller proved against the hash
        self._off: str | None = f"the management API is off: {HOW_TO_ENABLE}"
        self.allow_remote = False
        self.panel = True
        self._sessions: dict[bytes, float] = {}  # digest of a session token -> when it ends
        self._failures: dict[str, tuple[int, float]] = {}  # remote address -> (count, last)

    def _hash(self, value: str) -> bytes:
        return hmac.new(self._pepper, value.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    def configure(self, settings: RemoteManagement) -> None:
        secret = settings.secret_key
        self.allow_remote = settings.allow_remote
        self.panel = not settings.disable_control_panel
        known = self._known
        if not secret:
            digest, hashed, known, off = None, None, None, f"the management API is off: {HOW_TO_ENABLE}"
        elif secret.startswith(BCRYPT_PREFIXES):
            hashed, off = secret.encode(), None
            # The key in force before, now hashed at rest, stays known; another is learned once
            # a caller presents it (check_key).
            if not (hashed == self._bcrypt or _matches(known, hashed)):
                known = None
            digest = self._hash(known) if known is not None else None
        else:
            digest, hashed, known, off = self._hash(secret), None, secret, None
        if digest != self._digest or (digest is None and hashed != self._bcrypt):
            self._sessions.clear()  # a new key ends every session opened with the old one
            self._failures.clear()
        self._known = known
        self._digest, self._bcrypt, self._off = digest, hashed, off

    @property
    def off(self) -> str | None:
        """Why management is off, or None when it is on."""
        return self._off

    def check_key(self, presented: str) -> bool:
        if self._digest is not None:
            return hmac.compare_digest(self._hash(presented), self._digest)
        if self._bcrypt is not None and _matches(presented, self._bcrypt):
            self._digest, self._known = self._hash(presented), presented
            return True
        return False

    def admit(self, peer: str, key: str | None, session: str | None, *, sessions_ok: bool) -> None:
        """Raise ManagementError unless a request from `peer` with this key or session cookie
        may proceed. 404: management is off; 403: a remote caller where only loopback ones are
        allowed, or a banned address; 401: no key, or a wrong one."""
        if self._off is not None:
            raise ManagementError(404, self._off)
        remote = not is_loopback(peer)
        if remote and not self.allow_remote:
            raise ManagementError(
                403,
                "remote management is disabled: only loopback clients may call it "
                "(set remote-management.allow-remote: true to allow others)",
            )
        if remote:
            self._refuse_banned(peer)
        if key is not None:
            if self.check_key(key):
                self._failures.pop(peer, None)
                return
            if remote:
                self._failed(peer)
            raise ManagementError(401, "wrong management key")
        if session is not None and sessions_ok and self.session_valid(session):
            return
        raise ManagementError(
            401, "missing management key: send it as Authorization: Bearer <key> or X-Management-Key"
        )

    def _refuse_banned(self, peer: str) -> None:
        count, last = self._failures.get(peer, (0, 0.0))
        if count < MAX_FAILURES:
            return
        left = last + BAN_SECONDS - self._clock()
        if left <= 0:
            self._failures.pop(peer, None)
            return
        raise ManagementError(
            403, f"too many wrong management keys from this address; try again in {max(1, round(left / 60))} min"
        )

    def _failed(self, peer: str) -> None:
        count, _ = self._failures.get(peer, (0, 0.0))
        if len(self._failures) > 4096:
            self._failures.clear()  # a flood of addresses must not grow memory without bound
        self._failures[peer] = (count + 1, self._clock())

    # -- the status page's sessions --------------------------------------------------------------

    def open_session(self) -> str:
        now = self._clock()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]
        token = secrets.token_urlsafe(32)
        self._sessions[self._hash(token)] = now + SESSION_SECONDS
        return token

    def session_valid(self, token: str) -> bool:
        # A dict lookup by HMAC: its timing says nothing about any valid token.
        ends = self._sessions.get(self._hash(token))
        return ends is not None and ends > self._clock()

    def close_session(self, token: str) -> None:
        self._sessions.pop(self._hash(token), None)


# -- the config, secrets masked ------------------------------------------------------------------

_SECRET_FIELD = re.compile(r"key|secret|token|password", re.IGNORECASE)
_NOT_SECRET = frozenset({"api-key-entries"})
_URL_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def mask(value: str) -> str:
    """A secret as listings show it: never more than its last 4 characters."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) >= 12 else "…"


def _masked(value: Any, field: str = "") -> Any:
    if isinstance(value, dict):
        if field == "headers":
            return {k: mask(str(v)) for k, v in value.items()}
        return {k: _masked(v, k) for k, v in value.items()}
    secret = bool(_SECRET_FIELD.search(field)) and field not in _NOT_SECRET
    if isinstance(value, list):
        return [_masked(v, field) for v in value]
    if isinstance(value, str):
        if field == "secret-key":
            return "(set)" if value else ""
        if secret:
            return mask(value)
        return _URL_USERINFO.sub(r"\1…@", value)
    return value


def masked_config(config: Config) -> dict[str, Any]:
    """The config in force as JSON (config.yaml's key names), every secret masked: keys, header
    values, the management key, credentials inside proxy and override URLs."""
    return _masked(config.model_dump(mode="json", by_alias=True))


# -- auth files ------------------------------------------------------------------------------------


def auth_file_name(name: str | None) -> str:
    """`name` if it may name a file directly in the auth directory, else ManagementError 400."""
    if not name:
        raise ManagementError(400, "name the auth file: ?name=<file>.json")
    problem = None
    if "/" in name or "\\" in name or "\0" in name:
        problem = "must be a plain file name, without a path separator"
    elif name.startswith("."):
        problem = "must not start with '.' (the auth directory ignores such files)"
    elif not name.endswith(".json") or name == ".json":
        problem = "must end with .json"
    elif not name.isprintable() or shown(name) != name:
        problem = "must be printable text"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"must be at most {MAX_NAME_BYTES} bytes"
    if problem:
        raise ManagementError(400, f"auth file name {shown(name)[:80]!r} {problem}")
    return name


def validate_upload(directory: Path, name: str, raw: bytes) -> tuple[TokenFile, Credential]:
    """The token file and credential an upload would become, checked as the auth directory
    checks a file it loads; ManagementError 400 saying what is wrong (never quoting a token)."""
    path = directory / auth_file_name(name)
    try:
        token = parse_token_file(path, raw)
        credential = credential_from_token(token)
    except TokenFileError as e:
        raise ManagementError(400, f"not a usable auth file: {str(e).removeprefix(shown(path) + ': ')}") from None
    except Exception as e:  # noqa: BLE001 - hostile input must give a 400, never a traceback
        raise ManagementError(400, f"not a usable auth file ({type(e).__name__})") from None
    return token, credential


# -- each credential's state -----------------------------------------------------------------------


def quota_view(snapshot: Any, now: float) -> dict[str, Any] | None:
    """A quota snapshot (auth.quota.QuotaSnapshot) as JSON."""
    if snapshot is None:
        return None
    windows = []
    for w in snapshot.windows:
        windows.append(
            {
                "name": w.name,
                "used": w.fraction_used,
                "remaining": w.remaining,
                "limit": w.limit,
                "resets_at": w.resets_at,
                "status": w.status,
                "exhausted": w.exhausted,
            }
        )
    return {
        "observed_at": snapshot.observed_at,
        "windows": windows,
        "exhausted_until": snapshot.exhausted_until(),
        "headroom": snapshot.headroom(),
    }


def _when(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


@dataclass(slots=True)
class _State:
    state: str = "ready"
    detail: str = ""
    until: float | None = None

    def set(self, state: str, detail: str, until: float | None = None) -> None:
        self.state, self.detail, self.until = state, detail, until


def describe(
    cred: Credential,
    *,
    now: float,
    disabled: str | None,
    rests: Iterable[tuple[str | None, Any, float]],
    refreshing: bool,
    refresh_failure: tuple[str, float | None] | None,
    quota: Any = None,
    last_hour: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One credential's row: who it is (never its secret) and what it is doing now.

    `state` is the one that matters most: disabled, refresh-failed (refused for good, or failed
    with a retry due), refreshing, resting (a cooldown, or a quota window reported exhausted),
    else ready; `detail` says why and for how long, `until` when (epoch seconds)."""
    rest_rows = [
        {
            "model": model,
            "kind": cooldown.kind,
            "reason": cooldown.reason,
            "until": now + left,
            "seconds_left": round(left, 1),
        }
        for model, cooldown, left in rests
    ]
    quota_json = quota_view(quota, now)
    state = _State()
    if disabled == "management":
        state.set("disabled", "disabled at run time (management API); enable it to put it back in the pool")
    elif disabled == "file":
        state.set("disabled", 'disabled in its auth file ("disabled": true)')
    elif cred.refresh_error:
        state.set("refresh-failed", f"its refresh token was refused ({cred.refresh_error}): log in again")
    elif refreshing:
        state.set("refreshing", "refreshing its token")
    elif rest_rows:
        longest = max(rest_rows, key=lambda r: r["until"])
        scope = f" for {longest['model']}" if longest["model"] else ""
        what = longest["reason"]
        more = f" (and {len(rest_rows) - 1} more)" if len(rest_rows) > 1 else ""
        state.set(
            "resting",
            f"{what}{scope}, back in {_when(longest['seconds_left'])}{more}",
            longest["until"],
        )
    elif quota_json and (until := quota_json["exhausted_until"]) and until > now:
        window = max((w for w in quota_json["windows"] if w["exhausted"] and w["resets_at"]), key=lambda w: w["resets_at"])
        state.set("resting", f"quota window {window['name']} used up, resets in {_when(until - now)}", until)
    elif refresh_failure is not None:
        why, next_at = refresh_failure
        retry = f"; next attempt in {_when(next_at - now)}" if next_at and next_at > now else ""
        state.set("refresh-failed", f"the last refresh failed: {why}{retry}", next_at)
    if cred.oauth and cred.expires_at is not None and state.state == "ready" and cred.expires_at <= now:
        state.detail = "its token has expired; it is refreshed at the next request"
    refresh = None
    if cred.oauth:
        refresh = {
            "refreshing": refreshing,
            "error": cred.refresh_error or (refresh_failure[0] if refresh_failure else None),
            "terminal": bool(cred.refresh_error),
            "next_attempt": refresh_failure[1] if refresh_failure else None,
        }
    return {
        "id": cred.id,
        "provider": cred.provider,
        "service": cred.service or None,
        "label": cred.label,
        "source": cred.source,
        "kind": cred.kind,
        "email": cred.email or None,
        "priority": cred.priority,
        "prefix": cred.prefix or None,
        "file": Path(cred.path).name if cred.path else None,
        "expires_at": cred.expires_at,
        "state": state.state,
        "detail": state.detail,
        "until": state.until,
        "disabled": disabled,
        "rests": rest_rows,
        "refresh": refresh,
        "quota": quota_json,
        "last_hour": dict(last_hour) if last_hour is not None else None,
    }


def file_stat(path: Path) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError:
        return {"size": None, "modtime": None}
    return {"size": st.st_size, "modtime": st.st_mtime}


USAGE_DEFAULT_SPAN = 86400.0
USAGE_GROUPS = ("model", "credential", "client-key", "provider")
# A query answers at most this many time buckets per group.
MAX_BUCKETS = 2000
MAX_ERRORS_LISTED = 500


def usage_group(text: str | None) -> str | None:
    if not text:
        return None
    if text not in USAGE_GROUPS:
        raise ManagementError(400, f"by must be one of {', '.join(USAGE_GROUPS)}")
    return text


def usage_bucket(text: str | None, span: float) -> float | None:
    """`bucket` (seconds per time bucket) as a query gives it, or None for totals."""
    if not text:
        return None
    try:
        bucket = float(text)
    except ValueError:
        raise ManagementError(400, "bucket must be a number of seconds") from None
    if not 1 <= bucket < float("inf"):
        raise ManagementError(400, "bucket must be at least 1 second")
    if span / bucket > MAX_BUCKETS:
        raise ManagementError(400, f"at most {MAX_BUCKETS} buckets per query: widen bucket or shorten since")
    return bucket


def bounded_int(text: str | None, name: str, *, default: int, most: int) -> int:
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ManagementError(400, f"{name} must be a whole number") from None
    if not 1 <= value <= most:
        raise ManagementError(400, f"{name} must be between 1 and {most}")
    return value


def usage_since(text: str | None, now: float, default: float) -> float:
    """`since` as a query gives it: seconds ago (under a year), or epoch seconds."""
    if text is None or text == "":
        return now - default
    try:
        value = float(text)
    except ValueError:
        raise ManagementError(400, "since must be a number: seconds ago, or epoch seconds") from None
    if not value == value or value < 0 or value == float("inf"):
        raise ManagementError(400, "since must be a finite, non-negative number")
    return now - value if value < 366 * 86400 else value

