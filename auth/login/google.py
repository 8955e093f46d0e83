"""Google sign-in (Gemini CLI and Antigravity) and the Code Assist project they need.

The Google part is a plain authorization-code flow with the app's (public, installed-app) client
secret, `access_type=offline` and `prompt=consent` so that a refresh token is always issued.
The Code Assist part asks `v1internal:loadCodeAssist` which project the account uses; an account
without one is onboarded with `v1internal:onboardUser`, a long-running operation polled until
`done`, whose response names the project.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auth.login.callback import browser_login
from auth.login.errors import LoginError, TransientLoginError
from auth.login.session import Session

AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
TOKEN_URL = "https://oauth2.googleapis.com/token"
CODE_ASSIST = "https://cloudcode-pa.googleapis.com/v1internal"


@dataclass(frozen=True, slots=True)
class GoogleApp:
    title: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    port: int
    path: str


def sign_in(session: Session, app: GoogleApp) -> tuple[dict[str, Any], str]:
    """Browser sign-in and code exchange: the token response and the redirect_uri used."""

    def authorize_url(redirect_uri: str, state: str) -> str:
        params = {
            "access_type": "offline",
            "client_id": app.client_id,
            "prompt": "consent",
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(app.scopes),
            "state": state,
        }
        return AUTHORIZE_URL + "?" + urllib.parse.urlencode(params)

    redirect, redirect_uri = browser_login(
        session, title=app.title, port=app.port, path=app.path, authorize_url=authorize_url
    )
    form = {
        "code": redirect.code,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    token = session.http.json(
        "POST", TOKEN_URL, what=f"{app.title} token exchange", data=form, headers={"Accept": "application/json"}
    )
    if not token.get("access_token"):
        raise LoginError(f"{app.title} token exchange: the answer carries no access token")
    if not token.get("refresh_token"):
        raise LoginError(
            f"{app.title} token exchange: Google issued no refresh token, so the proxy could not "
            "keep this login alive; remove the app's access at https://myaccount.google.com/permissions "
            "and sign in again"
        )
    return token, redirect_uri


def user_email(session: Session, url: str, access_token: str, title: str, user_agent: str = "") -> str:
    headers = {"Authorization": f"Bearer {access_token}"}
    if user_agent:
        headers["User-Agent"] = user_agent
    info = session.http.json("GET", url, what=f"{title} account lookup", headers=headers)
    email = str(info.get("email") or "").strip()
    if not email:
        raise LoginError(f"{title} account lookup: Google did not name the account's email")
    return email


def project_of(data: Mapping[str, Any]) -> str:
    """`cloudaicompanionProject` (a string or {id, name}), or the other spellings seen."""
    for key in ("cloudaicompanionProject", "projectId", "project"):
        value = data.get(key)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def default_tier(load: Mapping[str, Any], fallback: str) -> str:
    tiers = load.get("allowedTiers")
    for tier in tiers if isinstance(tiers, list) else []:
        if isinstance(tier, dict) and tier.get("isDefault") is True and str(tier.get("id") or "").strip():
            return str(tier["id"]).strip()
    return fallback


def code_assist(
    session: Session,
    method: str,
    access_token: str,
    body: dict[str, Any],
    *,
    title: str,
    user_agent: str,
    base: str = CODE_ASSIST,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json",
        "Accept": "*/*",
        "User-Agent": user_agent,
        **(extra_headers or {}),
    }
    return session.http.json("POST", f"{base}:{method}", what=f"{title} Code Assist {method}", headers=headers, json=body)


def onboard(
    session: Session,
    call: Callable[[], dict[str, Any]],
    *,
    title: str,
    interval: float,
    attempts: int,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll `onboardUser` (re-sent, as CLIProxyAPI does) until its operation is `done`; returns
    the operation's `response`."""
    session.console.say(f"Setting up {title} Code Assist for this account (this can take a minute)...")
    for attempt in range(1, attempts + 1):
        try:
            operation = call()
        except TransientLoginError as e:
            if attempt == attempts:
                raise
            session.console.say(f"{e}; trying again.")
            sleep(interval)
            continue
        if operation.get("done") is True:
            if isinstance(operation.get("error"), dict):
                message = str(operation["error"].get("message") or "unknown error")[:200]
                raise LoginError(f"{title} Code Assist onboarding failed: {message}")
            response = operation.get("response")
            return response if isinstance(response, dict) else {}
        if attempt < attempts:
            sleep(interval)
    raise LoginError(
        f"{title} Code Assist onboarding did not finish after {attempts} checks; nothing was "
        "written. Run the login again in a minute."
    )
