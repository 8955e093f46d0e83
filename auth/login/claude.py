"""Claude Code subscription (Claude Pro / Max): authorization code + PKCE S256.

As CLIProxyAPI (internal/auth/claude/anthropic_auth.go, sdk/auth/claude.go): authorize on
claude.ai, exchange the code at platform.claude.com with a JSON body (the key order and the
axios-like headers of Claude Code), then read the account from the OAuth profile (and touch the
roles endpoint, as Claude Code does right after a login). File: `claude-<email>.json`.
"""

from __future__ import annotations

import secrets
import urllib.parse

from auth.login.callback import pkce_browser_login
from auth.login.errors import LoginError, TransientLoginError
from auth.login.pkce import PKCE
from auth.login.session import Record, Session, expiry_after, rfc3339
from auth.providers.claude import PROVIDER as CLAUDE

TITLE = "Claude"
AUTHORIZE_URL = "https://claude.ai/oauth/authorize"
TOKEN_URL = CLAUDE.token_url
PROFILE_URL = "https://api.anthropic.com/api/oauth/profile"
ROLES_URL = "https://api.anthropic.com/api/oauth/claude_cli/roles"
CLIENT_ID = CLAUDE.client_id
SCOPE = "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
CALLBACK_PORT = 54545
CALLBACK_PATH = "/callback"

# What Claude Code's OAuth calls look like on the wire (axios).
OAUTH_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "Content-Type": "application/json",
    "User-Agent": "axios/1.15.2",
    "Accept-Encoding": "gzip, compress, deflate, br",
    "Connection": "close",
}


def authorize_url(redirect_uri: str, state: str, pkce: PKCE) -> str:
    params = {
        "code": "true",
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "code_challenge": pkce.challenge,
        "code_challenge_method": pkce.method,
        "state": state,
    }
    return AUTHORIZE_URL + "?" + urllib.parse.urlencode(params)


def _profile(session: Session, access_token: str, url: str, what: str) -> dict | None:
    """Advisory lookups: a failure is reported, never fatal (the token answer names the account)."""
    headers = {**OAUTH_HEADERS, "Authorization": f"Bearer {access_token}", "Cache-Control": "no-cache"}
    headers.pop("Content-Type")
    try:
        return session.http.json("GET", url, what=what, headers=headers)
    except (LoginError, TransientLoginError):
        return None


def login(session: Session) -> Record:
    redirect, redirect_uri, pkce = pkce_browser_login(
        session, title=TITLE, port=CALLBACK_PORT, path=CALLBACK_PATH, authorize_url=authorize_url
    )
    code, _, code_state = redirect.code.partition("#")  # a pasted code may read code#state
    body = {  # this key order is Claude Code's
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "code_verifier": pkce.verifier,
        "state": code_state or redirect.state,
    }
    token = session.http.json("POST", TOKEN_URL, what="Claude token exchange", headers=OAUTH_HEADERS, json=body)
    access_token = str(token.get("access_token") or "")
    if not access_token:
        raise LoginError("Claude token exchange: the answer carries no access token")
    account = token.get("account") if isinstance(token.get("account"), dict) else {}
    organization = token.get("organization") if isinstance(token.get("organization"), dict) else {}
    email = str(account.get("email_address") or "")
    account_uuid = str(account.get("uuid") or "")
    org_uuid, org_name = str(organization.get("uuid") or ""), str(organization.get("name") or "")

    profile = _profile(session, access_token, PROFILE_URL, "Claude profile")
    if profile:
        p_account = profile.get("account") if isinstance(profile.get("account"), dict) else {}
        p_org = profile.get("organization") if isinstance(profile.get("organization"), dict) else {}
        email = str(p_account.get("email") or "").strip() or email
        account_uuid = str(p_account.get("uuid") or "").strip() or account_uuid
        org_uuid = str(p_org.get("uuid") or "").strip() or org_uuid
        org_name = str(p_org.get("name") or "").strip() or org_name
    _profile(session, access_token, ROLES_URL, "Claude roles")
    if not email:
        raise LoginError("Claude sign-in worked, but neither the token answer nor the profile names the account's email")

    data = {
        "type": "claude",
        "id_token": str(token.get("id_token") or ""),
        "access_token": access_token,
        "refresh_token": str(token.get("refresh_token") or ""),
        "last_refresh": rfc3339(),
        "email": email,
        "expired": expiry_after(token.get("expires_in")),
        "disabled": False,
    }
    for key, value in (
        ("account_uuid", account_uuid),
        ("organization_uuid", org_uuid),
        ("organization_name", org_name),
    ):
        if value:
            data[key] = value
    # One random device identity per credential (CLIProxyAPI's ClaudeDevicePoolSize = 1).
    data["claude_device_ids"] = [secrets.token_hex(32)]
    return Record("claude", f"claude-{email}.json", data, email)
