"""ChatGPT / Codex subscription: authorization code + PKCE S256, or (`--device`) the Codex
device-code variant.

As CLIProxyAPI (internal/auth/codex/openai_auth.go, sdk/auth/codex.go, sdk/auth/codex_device.go):
the account facts come from the ID token's claims (`email`, and under
`https://api.openai.com/auth`: `chatgpt_account_id`, `chatgpt_plan_type`). File:
`codex-<hashAccountID>-<email>-<plan>.json`, where hashAccountID is the first 8 hex digits of
SHA-256(chatgpt_account_id) and plan is the plan type lower-cased with every run of other
characters turned into one `-` (internal/auth/codex/filename.go).

The device variant is OpenAI's own, not RFC 8628: POST {client_id} for a `device_auth_id` and
`user_code`, poll with both (403/404 while pending) until it returns an authorization code with
the PKCE pair the server made, then exchange that code like the browser flow does, with
redirect_uri https://auth.openai.com/deviceauth/callback.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import Any

from auth.login.callback import pkce_browser_login
from auth.login.device import parse_interval, poll, show_code
from auth.login.errors import LoginError, TransientLoginError
from auth.login.pkce import PKCE
from auth.login.session import Record, Session, expiry_after, rfc3339
from auth.providers.base import jwt_claims
from auth.providers.codex import AUTH_CLAIM
from auth.providers.codex import PROVIDER as CODEX

TITLE = "ChatGPT (Codex)"
AUTHORIZE_URL = "https://auth.openai.com/oauth/authorize"
TOKEN_URL = CODEX.token_url
CLIENT_ID = CODEX.client_id
SCOPE = "openid email profile offline_access"
CALLBACK_PORT = 1455
CALLBACK_PATH = "/auth/callback"

DEVICE_USERCODE_URL = "https://auth.openai.com/api/accounts/deviceauth/usercode"
DEVICE_TOKEN_URL = "https://auth.openai.com/api/accounts/deviceauth/token"
DEVICE_PAGE_URL = "https://auth.openai.com/codex/device"
DEVICE_REDIRECT_URI = "https://auth.openai.com/deviceauth/callback"
DEVICE_LIFETIME = 15 * 60.0

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def authorize_url(redirect_uri: str, state: str, pkce: PKCE) -> str:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        "prompt": "login",
        "id_token_add_organizations": "true",
        "codex_cli_simplified_flow": "true",
    }
    return AUTHORIZE_URL + "?" + urllib.parse.urlencode(params)


def account_hash(account_id: str) -> str:
    return hashlib.sha256(account_id.encode()).hexdigest()[:8] if account_id else ""


def plan_for_file_name(plan: str) -> str:
    return "-".join(p.lower() for p in re.split(r"[^\w]+|_", plan.strip()) if p)


def file_name(email: str, plan: str, account_id: str) -> str:
    """CLIProxyAPI's codex.CredentialFileName(email, plan, hash, includeProviderPrefix=true)."""
    parts = ["codex"]
    if digest := account_hash(account_id.strip()):
        parts.append(digest)
    parts.append(email.strip())
    if plan := plan_for_file_name(plan):
        parts.append(plan)
    return "-".join(parts) + ".json"


def exchange(session: Session, code: str, redirect_uri: str, verifier: str) -> Record:
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    token = session.http.json(
        "POST", TOKEN_URL, what="Codex token exchange", data=form, headers={"Accept": "application/json"}
    )
    if not token.get("access_token"):
        raise LoginError("Codex token exchange: the answer carries no access token")
    id_token = str(token.get("id_token") or "")
    claims = jwt_claims(id_token)
    auth_info: dict[str, Any] = claims.get(AUTH_CLAIM) if isinstance(claims.get(AUTH_CLAIM), dict) else {}
    email = str(claims.get("email") or "").strip()
    account_id = str(auth_info.get("chatgpt_account_id") or "").strip()
    plan = str(auth_info.get("chatgpt_plan_type") or "").strip()
    if not email:
        raise LoginError("Codex sign-in worked, but the ID token names no email; nothing was written")
    data = {
        "type": "codex",
        "id_token": id_token,
        "access_token": str(token["access_token"]),
        "refresh_token": str(token.get("refresh_token") or ""),
        "account_id": account_id,
        "last_refresh": rfc3339(),
        "email": email,
        "expired": expiry_after(token.get("expires_in")),
        "disabled": False,
    }
    account = f"{email} ({plan} plan)" if plan else email
    return Record("codex", file_name(email, plan, account_id), data, account)


def login(session: Session) -> Record:
    if session.options.device:
        return device_login(session)
    redirect, redirect_uri, pkce = pkce_browser_login(
        session, title=TITLE, port=CALLBACK_PORT, path=CALLBACK_PATH, authorize_url=authorize_url
    )
    return exchange(session, redirect.code, redirect_uri, pkce.verifier)


def device_login(session: Session) -> Record:
    start = session.http.json(
        "POST", DEVICE_USERCODE_URL, what="Codex device code request", headers=_JSON, json={"client_id": CLIENT_ID}
    )
    user_code = str(start.get("user_code") or start.get("usercode") or "").strip()
    device_auth_id = str(start.get("device_auth_id") or "").strip()
    if not user_code or not device_auth_id:
        raise LoginError("Codex device code request: the answer lacks the user code or the device id")
    show_code(session, page=session.http.url(DEVICE_PAGE_URL), user_code=user_code, what="approve this device")

    def attempt() -> dict | None:
        response = session.http.request(
            "POST",
            DEVICE_TOKEN_URL,
            what="Codex device poll",
            headers=_JSON,
            json={"device_auth_id": device_auth_id, "user_code": user_code},
        )
        if response.status_code in (403, 404):  # not approved yet
            return None
        if 200 <= response.status_code < 300:
            return session.http.parse("Codex device poll", DEVICE_TOKEN_URL, response)
        error = TransientLoginError if response.status_code >= 500 or response.status_code == 429 else LoginError
        raise error(session.http.failure("Codex device poll", DEVICE_TOKEN_URL, response))

    granted = poll(
        session,
        attempt,
        interval=parse_interval(start.get("interval")),
        expires_in=DEVICE_LIFETIME,
        label="Waiting for the device to be approved",
    )
    code = str(granted.get("authorization_code") or "").strip()
    verifier = str(granted.get("code_verifier") or "").strip()
    if not code or not verifier or not str(granted.get("code_challenge") or "").strip():
        raise LoginError("Codex device poll: the approval lacks the authorization code or its PKCE pair")
    record = exchange(session, code, DEVICE_REDIRECT_URI, verifier)
    record.data["codex_login_mode"] = "device"
    return record
