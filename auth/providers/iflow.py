"""iFlow subscription (OAuth): Chat Completions with the account's API key, every request signed.

The OAuth token only renews the API key (read from the user info after each refresh); requests
carry the key. As CLIProxyAPI's iflow_executor.go at f5dc6483d^: every request names the CLI, a
fresh session id and a millisecond timestamp, signed with the API key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import HOUR, Login, Provider
from auth.providers.grant import Refreshed, call, new_string, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

USER_INFO_URL = "https://iflow.cn/api/oauth/getUserInfo"
USER_AGENT = "iFlow-Cli"


def signature(api_key: str, user_agent: str, session_id: str, timestamp_ms: int) -> str:
    """Hex HMAC-SHA256 keyed by the API key over `user_agent:session_id:timestamp_ms`."""
    payload = f"{user_agent}:{session_id}:{timestamp_ms}".encode()
    return hmac.new(api_key.encode(), payload, hashlib.sha256).hexdigest()


def signed_headers(api_key: str, *, session_id: str = "", timestamp_ms: int | None = None) -> dict[str, str]:
    """The headers an iFlow API call carries besides the key (a new session id per call)."""
    session_id = session_id or f"session-{uuid.uuid4()}"
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    out = {"user-agent": USER_AGENT, "session-id": session_id, "x-iflow-timestamp": str(stamp)}
    if api_key:
        out["x-iflow-signature"] = signature(api_key, USER_AGENT, session_id, stamp)
    return out


@dataclass(frozen=True)
class Iflow(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        # Requests carry the account's API key; the OAuth token only renews it.
        return {"secret": str(token.data.get("api_key") or "")}

    def missing_secret(self) -> str:
        return "api_key"

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        """Refresh the OAuth token, then read the account's API key (what requests carry)."""
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        _, fields = await refresh_token_grant(
            self, cred, token, client, overrides,
            extra={"client_secret": self.client_secret}, headers={"authorization": f"Basic {basic}"},
            keep=("token_type", "scope"), secrets=(str(token.get("api_key") or ""),),
        )
        access = fields["access_token"]
        secrets = (token.refresh_token, token.access_token, str(token.get("api_key") or ""), access)
        info = await call(client, self.name, "GET", USER_INFO_URL, overrides, secrets, params={"accessToken": access})
        user = info.get("data") if isinstance(info.get("data"), dict) else {}
        if api_key := new_string(user, "apiKey") or new_string(user, "api_key"):
            fields["api_key"] = api_key
        if email := new_string(user, "email"):
            fields["email"] = email
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        # Signed per request: always the CLI's own User-Agent, whatever the client's.
        return signed_headers(cred.secret)


PROVIDER = Iflow(
    "iflow",
    "oauth",
    wire="openai-chat",
    families=("qwen3-*", "kimi-k2*", "deepseek-*", "glm-*", "iflow-*"),
    listing=("qwen3-coder-plus", "kimi-k2", "deepseek-v3.2", "glm-4.6"),
    marker=":brown_circle:",
    file_type="iflow",
    base_url="https://apis.iflow.cn/v1",
    lead=24 * HOUR,
    token_url="https://iflow.cn/oauth/token",
    client_id="10009311001",
    client_secret="4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW",
    login=Login("iflow", "iFlow", "auth.login.iflow"),
)
