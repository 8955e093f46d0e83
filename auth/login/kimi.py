"""Kimi Code subscription: device code (RFC 8628) with Kimi's X-Msh-* device headers.

As CLIProxyAPI (internal/auth/kimi/kimi.go, sdk/auth/kimi.go): form posts with only the public
client id, a random device id per login (kept in the file as `device_id`, since the API calls
send it too), polling at the server's interval (5 s when it names none). The header values
are the official Kimi CLI's (`X-Msh-Platform: kimi_cli`), which auth.kimi.com expects; CLIProxyAPI
sends its own name there. Kimi answers the pending states with 200 and an `error`. Kimi does not
name the account, so the file is `kimi-<unix milliseconds>.json`.
"""

from __future__ import annotations

import time
import uuid

from auth.login.device import device_code_login
from auth.login.session import Record, Session, expiry_after
from auth.providers import kimi

TITLE = "Kimi"
DEVICE_URL = "https://auth.kimi.com/api/oauth/device_authorization"
TOKEN_URL = kimi.PROVIDER.token_url
CLIENT_ID = kimi.PROVIDER.client_id
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
PLATFORM = kimi.PLATFORM
CLIENT_VERSION = kimi.VERSION
device_model = kimi.device_model
device_headers = kimi.device_headers


def login(session: Session) -> Record:
    device_id = uuid.uuid4().hex
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        **device_headers(device_id),
    }
    token = device_code_login(
        session,
        title=TITLE,
        device_url=DEVICE_URL,
        token_url=TOKEN_URL,
        headers=headers,
        start_form={"client_id": CLIENT_ID},
        poll_form={"client_id": CLIENT_ID, "grant_type": GRANT_TYPE},
    )
    now_ms = int(time.time() * 1000)
    data = {
        "type": "kimi",
        "access_token": str(token["access_token"]),
        "refresh_token": str(token.get("refresh_token") or ""),
        "token_type": str(token.get("token_type") or ""),
        "scope": str(token.get("scope") or ""),
        "device_id": device_id,
        "expired": expiry_after(token.get("expires_in")),
        "timestamp": now_ms,
        "disabled": False,
    }
    return Record("kimi", f"kimi-{now_ms}.json", data, "a Kimi account (Kimi does not say which)")
