"""iFlow subscription: authorization code with the app's client secret, then the account's API
key from `getUserInfo`.

As CLIProxyAPI's last iFlow login (internal/auth/iflow/iflow_auth.go, sdk/auth/iflow.go at
f5dc6483d^; the provider was removed upstream later): the authorize page takes `redirect` (not
`redirect_uri`) and logs in by phone; the token call sends the client credentials both as HTTP
Basic and in the form; `getUserInfo?accessToken=...` returns the `apiKey` the proxy calls iFlow
with, and the email (or, failing that, the phone number) naming the account. File:
`iflow-<email>-<unix seconds>.json`, so every login makes a new file.
"""

from __future__ import annotations

import base64
import time
import urllib.parse

from auth.login.callback import browser_login
from auth.login.errors import LoginError
from auth.login.session import Record, Session, expiry_after, rfc3339
from auth.providers.iflow import PROVIDER as IFLOW

TITLE = "iFlow"
AUTHORIZE_URL = "https://iflow.cn/oauth"
TOKEN_URL = IFLOW.token_url
USERINFO_URL = "https://iflow.cn/api/oauth/getUserInfo"
CLIENT_ID = IFLOW.client_id
CLIENT_SECRET = IFLOW.client_secret
CALLBACK_PORT = 11451
CALLBACK_PATH = "/oauth2callback"


def authorize_url(redirect_uri: str, state: str) -> str:
    params = {
        "loginMethod": "phone",
        "type": "phone",
        "redirect": redirect_uri,
        "state": state,
        "client_id": CLIENT_ID,
    }
    return AUTHORIZE_URL + "?" + urllib.parse.urlencode(params)


def login(session: Session) -> Record:
    redirect, redirect_uri = browser_login(
        session, title=TITLE, port=CALLBACK_PORT, path=CALLBACK_PATH, authorize_url=authorize_url
    )
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "code": redirect.code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    token = session.http.json(
        "POST",
        TOKEN_URL,
        what="iFlow token exchange",
        data=form,
        headers={"Accept": "application/json", "Authorization": f"Basic {basic}"},
    )
    access_token = str(token.get("access_token") or "")
    if not access_token:
        raise LoginError("iFlow token exchange: the answer carries no access token")
    info = session.http.json(
        "GET", USERINFO_URL, what="iFlow account lookup", params={"accessToken": access_token},
        headers={"Accept": "application/json"},
    )
    user = info.get("data") if isinstance(info.get("data"), dict) else {}
    if info.get("success") is not True or not str(user.get("apiKey") or "").strip():
        raise LoginError("iFlow account lookup: iFlow returned no API key for this account; nothing was written")
    email = str(user.get("email") or "").strip() or str(user.get("phone") or "").strip()
    if not email:
        raise LoginError("iFlow account lookup: iFlow named neither an email nor a phone number for this account")
    data = {
        "type": "iflow",
        "access_token": access_token,
        "refresh_token": str(token.get("refresh_token") or ""),
        "last_refresh": rfc3339(),
        "expired": expiry_after(token.get("expires_in")),
        "api_key": str(user["apiKey"]).strip(),
        "email": email,
        "token_type": str(token.get("token_type") or ""),
        "scope": str(token.get("scope") or ""),
        "cookie": "",
        "disabled": False,
    }
    return Record("iflow", f"iflow-{email}-{int(time.time())}.json", data, email)
