"""Qwen Code subscription: device code with PKCE (RFC 8628 + RFC 7636).

As CLIProxyAPI's last Qwen login (internal/auth/qwen/qwen_auth.go, sdk/auth/qwen.go at
8fac29631^; the provider was removed upstream later). Qwen does not say who signed in, so the
file is named after an email or alias the user gives (`--email`, or asked for on a terminal):
`qwen-<email>.json`. `resource_url` is the API host the token is for.
"""

from __future__ import annotations

import os

from auth.login.device import device_code_login
from auth.login.errors import LoginError
from auth.login.pkce import PKCE
from auth.login.session import Record, Session, expiry_after, rfc3339
from auth.providers.qwen import PROVIDER as QWEN

TITLE = "Qwen"
DEVICE_URL = "https://chat.qwen.ai/api/v1/oauth2/device/code"
TOKEN_URL = QWEN.token_url
CLIENT_ID = QWEN.client_id
SCOPE = "openid profile email model.completion"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


def _ask_email(session: Session) -> str:
    if session.options.email.strip():
        return session.options.email.strip()
    fd = session.stdin
    if fd is None or not os.isatty(fd):
        raise LoginError(
            "Qwen does not tell which account signed in: name this one with --email "
            "(your Qwen email, or any alias that tells your accounts apart)"
        )
    session.console.say("Qwen does not tell which account signs in; its file is named after what you enter.")
    session.console.prompt("Email or alias for this Qwen account: ")
    line = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if not line:
        raise LoginError("No email or alias given; nothing was written. Run again with --email you@example.com")
    return line


def login(session: Session) -> Record:
    email = _ask_email(session)
    pkce = PKCE.new()
    form = {"client_id": CLIENT_ID, "scope": SCOPE, "code_challenge": pkce.challenge, "code_challenge_method": pkce.method}
    token = device_code_login(
        session,
        title=TITLE,
        device_url=DEVICE_URL,
        token_url=TOKEN_URL,
        headers=_FORM,
        start_form=form,
        poll_form={"grant_type": GRANT_TYPE, "client_id": CLIENT_ID, "code_verifier": pkce.verifier},
    )
    data = {
        "type": "qwen",
        "access_token": str(token["access_token"]),
        "refresh_token": str(token.get("refresh_token") or ""),
        "last_refresh": rfc3339(),
        "resource_url": str(token.get("resource_url") or ""),
        "email": email,
        "expired": expiry_after(token.get("expires_in")),
        "disabled": False,
    }
    return Record("qwen", f"qwen-{email}.json", data, email)
