"""Antigravity subscription: Google sign-in with Antigravity's app, then its Code Assist project.

As CLIProxyAPI (internal/auth/antigravity/{constants,auth}.go, sdk/auth/antigravity.go): the
project comes from `loadCodeAssist` (metadata ideType ANTIGRAVITY) or, for an account without
one, from `onboardUser` on the daily Code Assist host, polled every 2 s up to 5 times, with the
tier marked default in `allowedTiers` (else the current tier, else free-tier). The requests
carry Antigravity's User-Agent. File: `antigravity-<email>.json`.
"""

from __future__ import annotations

import time
from typing import Any

from auth.login import google
from auth.login.errors import LoginError
from auth.login.session import Record, Session, expiry_after
from auth.providers import antigravity as spec
from auth.providers.antigravity import PROVIDER as ANTIGRAVITY

TITLE = "Antigravity"
CLIENT_ID = ANTIGRAVITY.client_id
CLIENT_SECRET = ANTIGRAVITY.client_secret
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
)
APP = google.GoogleApp(TITLE, CLIENT_ID, CLIENT_SECRET, SCOPES, port=51121, path="/oauth-callback")
USERINFO_URL = "https://www.googleapis.com/oauth2/v2/userinfo?alt=json"
DAILY_CODE_ASSIST = f"{spec.BASE_URLS[0]}/v1internal"
VERSION = spec.VERSION
USER_AGENT = spec.USER_AGENT
ONBOARD_USER_AGENT = f"{USER_AGENT} {spec.NODE_CLIENT}"
GOOG_API_CLIENT = spec.GOOG_API_CLIENT
ONBOARD_INTERVAL = 2.0
ONBOARD_ATTEMPTS = 5


def _tier(load: dict[str, Any]) -> str:
    current = load.get("currentTier")
    fallback = "free-tier"
    if isinstance(current, dict) and str(current.get("id") or "").strip():
        fallback = str(current["id"]).strip()
    return google.default_tier(load, fallback)


def project_id(session: Session, access_token: str) -> str:
    load = google.code_assist(
        session, "loadCodeAssist", access_token, {"metadata": {"ideType": "ANTIGRAVITY"}},
        title=TITLE, user_agent=USER_AGENT,
    )
    if project := google.project_of(load):
        return project
    body = {"tier_id": _tier(load), "metadata": {"ide_type": "ANTIGRAVITY", "ide_version": VERSION, "ide_name": "antigravity"}}
    response = google.onboard(
        session,
        lambda: google.code_assist(
            session, "onboardUser", access_token, body, title=TITLE, user_agent=ONBOARD_USER_AGENT,
            base=DAILY_CODE_ASSIST, extra_headers={"X-Goog-Api-Client": GOOG_API_CLIENT},
        ),
        title=TITLE,
        interval=ONBOARD_INTERVAL,
        attempts=ONBOARD_ATTEMPTS,
    )
    project = google.project_of(response)
    if not project:
        raise LoginError("Antigravity onboarding finished without naming a project; nothing was written. Try again later.")
    return project


def login(session: Session) -> Record:
    token, _ = google.sign_in(session, APP)
    access_token = str(token["access_token"])
    email = google.user_email(session, USERINFO_URL, access_token, TITLE, user_agent=USER_AGENT)
    project = project_id(session, access_token)
    now_ms = int(time.time() * 1000)
    data = {
        "type": "antigravity",
        "access_token": access_token,
        "refresh_token": str(token["refresh_token"]),
        "expires_in": token.get("expires_in", 0),
        "timestamp": now_ms,
        "expired": expiry_after(token.get("expires_in")),
        "email": email,
        "project_id": project,
        "disabled": False,
    }
    return Record("antigravity", f"antigravity-{email}.json", data, f"{email} (project {project})")
