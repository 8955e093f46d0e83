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

from auth.login.device import oauth_poll_result, parse_interval, poll, show_code
from auth.login.errors import LoginError
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
    start = session.http.json("POST", DEVICE_URL, what="Kimi device code request", data={"client_id": CLIENT_ID}, headers=headers)
    device_code = str(start.get("device_code") or "")
    page = str(start.get("verification_uri_complete") or start.get("verification_uri") or "")
    if not device_code or not page:
        raise LoginError("Kimi device code request: the answer lacks the device code or the page to approve it on")
    show_code(session, page=session.http.url(page), user_code=str(start.get("user_code") or ""), what="approve this sign-in")

    def attempt() -> dict | None:
        response = session.http.request(
            "POST",
            TOKEN_URL,
            what="Kimi token poll",
            headers=headers,
            data={"client_id": CLIENT_ID, "device_code": device_code, "grant_type": GRANT_TYPE},
        )
        return oauth_poll_result(session, TOKEN_URL, "Kimi token poll", response)

    token = poll(
        session,
        attempt,
        interval=parse_interval(start.get("interval")),
        expires_in=parse_interval(start.get("expires_in"), 0) or None,
        label="Waiting for the sign-in to be approved",
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
