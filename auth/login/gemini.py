"""Gemini CLI subscription (Gemini Code Assist, free tier or Google One): Google sign-in, then
the Code Assist project.

As CLIProxyAPI's last Gemini CLI login (internal/auth/gemini/gemini_auth.go, internal/cmd/login.go
at dd49a5200; the provider was removed upstream later):
* without `--project-id`, the project is discovered: `loadCodeAssist` names it for an account
  already set up, otherwise `onboardUser` (polled every 5 s) provisions the free-tier one;
* with `--project-id ID[,ID...]`, each Google Cloud project is onboarded explicitly;
* each project must have the Gemini for Google Cloud API (cloudaicompanion.googleapis.com)
  enabled: it is checked through Service Usage and enabled when off (`checked`).
The token is stored nested under `token`, as Go's oauth2.Token plus the client fields Gemini
CLI keeps. File: `gemini-<email>-<project>.json` (`gemini-<email>-all.json` for several
projects), the name CLIProxyAPI's CLI and management logins gave it; older releases wrote
`<email>-<project>.json`, which the proxy reads just the same (the `type` decides).
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from auth.login import google
from auth.login.errors import LoginError, TransientLoginError
from auth.login.session import Record, Session, expiry_after
from auth.providers.gemini_cli import PROVIDER as GEMINI_CLI

TITLE = "Gemini"
CLIENT_ID = GEMINI_CLI.client_id
CLIENT_SECRET = GEMINI_CLI.client_secret
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
)
APP = google.GoogleApp(TITLE, CLIENT_ID, CLIENT_SECRET, SCOPES, port=8085, path="/oauth2callback")
USERINFO_URL = "https://www.googleapis.com/oauth2/v1/userinfo?alt=json"
SERVICE_URL = "https://serviceusage.googleapis.com/v1/projects/{project}/services/cloudaicompanion.googleapis.com"
GEMINI_CLI_VERSION = "0.34.0"
METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
ONBOARD_INTERVAL = 5.0
ONBOARD_ATTEMPTS = 24


def user_agent() -> str:
    """Gemini CLI's User-Agent: GeminiCLI/<version>/<model> (<platform>; <arch>; terminal)."""
    system = {"win32": "win32", "darwin": "darwin"}.get(sys.platform, sys.platform.rstrip("0123456789"))
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "i386": "x86", "i686": "x86"}.get(machine, machine)
    return f"GeminiCLI/{GEMINI_CLI_VERSION}/unknown ({system}; {arch}; terminal)"


def _call(session: Session, method: str, access_token: str, body: dict[str, Any]) -> dict[str, Any]:
    return google.code_assist(session, method, access_token, body, title=TITLE, user_agent=user_agent())


def setup_project(session: Session, access_token: str, requested: str = "") -> str:
    """The Code Assist project to use: `requested`, or the account's own (onboarding it first
    when it has none yet). Returns the project id the backend confirmed."""
    body: dict[str, Any] = {"metadata": METADATA}
    if requested:
        body["cloudaicompanionProject"] = requested
    load = _call(session, "loadCodeAssist", access_token, body)
    project = requested or google.project_of(load)
    if project and not requested and isinstance(load.get("currentTier"), dict):
        return project  # set up already
    onboard_body: dict[str, Any] = {"tierId": google.default_tier(load, "legacy-tier"), "metadata": METADATA}
    if project:
        onboard_body["cloudaicompanionProject"] = project
    response = google.onboard(
        session,
        lambda: _call(session, "onboardUser", access_token, onboard_body),
        title=TITLE,
        interval=ONBOARD_INTERVAL,
        attempts=ONBOARD_ATTEMPTS,
    )
    final = google.project_of(response) or project
    if not final:
        raise LoginError(
            "This Google account has no Gemini Code Assist project and none could be set up "
            "automatically; nothing was written. Run `cliproxy auth gemini --project-id "
            "YOUR_GCP_PROJECT` with a Google Cloud project you own."
        )
    if requested and final != requested:
        session.console.say(f"Project {requested} is served by the Code Assist project {final}; using that.")
    return final


def ensure_api_enabled(session: Session, access_token: str, project: str) -> bool:
    """Is cloudaicompanion.googleapis.com on for `project` (turned on if it was off)?"""
    url = SERVICE_URL.format(project=project)
    headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json", "User-Agent": user_agent()}
    response = session.http.request("GET", url, what="Gemini API check", headers=headers)
    if response.status_code == 200:
        try:
            if response.json().get("state") == "ENABLED":
                return True
        except (ValueError, AttributeError):
            pass
    response = session.http.request("POST", url + ":enable", what="Gemini API activation", headers=headers, json={})
    if response.status_code in (200, 201):
        return True
    return response.status_code == 400 and "already enabled" in response.text.lower()


def login(session: Session) -> Record:
    requested = list(dict.fromkeys(p.strip() for p in session.options.project_id.split(",") if p.strip()))
    token, _ = google.sign_in(session, APP)
    access_token = str(token["access_token"])
    email = google.user_email(session, USERINFO_URL, access_token, TITLE)

    projects: list[str] = []
    for wanted in requested or [""]:
        project = setup_project(session, access_token, wanted)
        if project not in projects:
            projects.append(project)

    checked = True
    for project in projects:
        try:
            enabled = ensure_api_enabled(session, access_token, project)
        except TransientLoginError:
            enabled = False
        if enabled:
            continue
        how = (
            "enable 'Gemini for Google Cloud API' at https://console.cloud.google.com/apis/library/"
            f"cloudaicompanion.googleapis.com?project={project}"
        )
        if requested:
            raise LoginError(f"The Gemini API is not enabled for project {project} and could not be turned on; {how}, then run the login again.")
        session.console.say(f"Could not confirm that the Gemini API is on for {project}; if requests fail, {how}.")
        checked = False

    token_map = {
        "access_token": access_token,
        "token_type": str(token.get("token_type") or "Bearer"),
        "refresh_token": str(token["refresh_token"]),
        "expiry": expiry_after(token.get("expires_in")),
        "token_uri": google.TOKEN_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": list(SCOPES),
        "universe_domain": "googleapis.com",
    }
    if token.get("expires_in"):
        token_map["expires_in"] = token["expires_in"]
    project_id = ",".join(projects)
    data = {
        "type": "gemini",
        "token": token_map,
        "project_id": project_id,
        "email": email,
        "auto": False,
        "checked": checked,
        "disabled": False,
    }
    suffix = "all" if len(projects) > 1 else project_id
    return Record("gemini", f"gemini-{email}-{suffix}.json", data, f"{email} (project {project_id})")
