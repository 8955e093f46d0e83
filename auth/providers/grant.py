"""Talking to an OAuth token endpoint: the call, its failures, and the refresh_token grant most
providers use as it is. Provider modules compose these; auth.refresh decides when to call them.

No token ever appears in a log line or an exception message.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from auth.credential import Credential
from auth.providers.base import redirect
from auth.tokens import EXPIRY_KEYS, REFRESH_ERROR_KEY, TokenFile, format_time

TIMEOUT = httpx.Timeout(30.0)

# OAuth error codes that say "this refresh token will never work again".
TERMINAL_CODES = frozenset(
    {"invalid_grant", "refresh_token_reused", "refresh_token_expired", "refresh_token_invalidated",
     "token_revoked", "unauthorized_client", "invalid_client"}
)
_TERMINAL_WORDS = ("reuse", "revoked", "invalid_grant", "refresh token not found", "expired or revoked")


class RefreshError(Exception):
    """A failed refresh. `terminal`: the provider refused the refresh token for good."""

    def __init__(self, message: str, *, terminal: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.terminal = terminal
        self.code = code or ("refused" if terminal else "failed")


@dataclass(frozen=True, slots=True)
class Refreshed:
    token: TokenFile  # the file's new content (unchanged for in-memory tokens)
    persist: bool = True
    # For tokens that live in memory only (Vertex, minted from a service account).
    secret: str = ""
    expires_at: float | None = None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def expiry_fields(body: Mapping[str, Any], when: datetime.datetime) -> dict[str, Any]:
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool):
        return {}
    return {"expired": format_time(when + datetime.timedelta(seconds=float(lifetime)))}


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "…")
    return text


def failure(provider: str, response: httpx.Response, secrets: tuple[str, ...]) -> RefreshError:
    status = response.status_code
    code = description = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or error.get("type") or "")
            description = str(error.get("message") or "")
        elif isinstance(error, str):
            code = error
        description = str(body.get("error_description") or body.get("message") or description)
    description = _scrub(description[:200], secrets)
    code = _scrub(code[:80], secrets)
    text = f"{code} {description}".lower()
    terminal = status in (400, 401, 403) and (
        code in TERMINAL_CODES or any(word in text for word in _TERMINAL_WORDS)
    )
    message = f"{provider} token endpoint answered HTTP {status}"
    if code:
        message += f": {code}"
    if description:
        message += f" ({description})"
    return RefreshError(message, terminal=terminal, code=code or f"HTTP {status}")


async def call(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    overrides: Mapping[str, str],
    secrets: tuple[str, ...],
    **kw: Any,
) -> dict[str, Any]:
    try:
        response = await client.request(method, redirect(url, overrides), timeout=TIMEOUT, **kw)
    except httpx.HTTPError as e:
        # Never str(e): it may quote the URL, and some URLs carry a token.
        raise RefreshError(f"{provider} token endpoint unreachable ({type(e).__name__})") from None
    if response.status_code >= 400:
        raise failure(provider, response, secrets)
    try:
        body = response.json()
    except ValueError:
        raise RefreshError(f"{provider} token endpoint answered HTTP {response.status_code} without JSON") from None
    if not isinstance(body, dict):
        raise RefreshError(f"{provider} token endpoint answered something other than a JSON object")
    return body


def access_token(provider: str, body: Mapping[str, Any]) -> str:
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise RefreshError(f"{provider} token endpoint answered without an access_token")
    return token


def require_refresh_token(cred: Credential, token: TokenFile) -> str:
    if not token.refresh_token:
        raise RefreshError(f"{cred.provider}: the auth file has no refresh_token", terminal=True,
                           code="no_refresh_token")
    return token.refresh_token


def new_string(body: Mapping[str, Any], key: str) -> str:
    """A non-empty string the endpoint answered under `key`, or ""."""
    value = body.get(key)
    return value if isinstance(value, str) and value else ""


def refreshed(token: TokenFile, fields: Mapping[str, Any], *, drop: tuple[str, ...] = ()) -> Refreshed:
    """The file with `fields` on top, and no longer marked as refused."""
    data = {**token.data, **fields}
    for key in (*drop, REFRESH_ERROR_KEY):
        data.pop(key, None)
    return Refreshed(TokenFile(token.path, data))


async def refresh_token_grant(
    spec: Any,
    cred: Credential,
    token: TokenFile,
    client: httpx.AsyncClient,
    overrides: Mapping[str, str],
    *,
    extra: Mapping[str, str] = {},
    headers: Mapping[str, str] = {},
    url: str = "",
    as_json: bool = False,
    keep: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An OAuth 2 refresh_token grant at `spec`'s token endpoint: (the answer, the file fields
    it updates: the access token, a rotated refresh token, the expiry, and the string fields of
    the answer named in `keep`)."""
    refresh = require_refresh_token(cred, token)
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": spec.client_id, **extra}
    kw: dict[str, Any] = {"json": form} if as_json else {"data": form}
    body = await call(client, cred.provider, "POST", url or spec.token_url, overrides,
                      (refresh, token.access_token, *secrets), headers={"accept": "application/json", **headers}, **kw)
    when = now()
    fields: dict[str, Any] = {"access_token": access_token(cred.provider, body), "last_refresh": format_time(when)}
    if rotated := new_string(body, "refresh_token"):
        fields["refresh_token"] = rotated
    fields.update(expiry_fields(body, when))
    for key in keep:
        if isinstance(body.get(key), str):
            fields[key] = body[key]
    return body, fields


__all__ = [
    "EXPIRY_KEYS", "RefreshError", "Refreshed", "TIMEOUT", "TERMINAL_CODES", "access_token", "call",
    "expiry_fields", "failure", "now", "refresh_token_grant", "refreshed", "require_refresh_token",
]
