"""xAI Grok subscription (OAuth): the OpenAI Responses API of Grok's CLI proxy, or of api.x.ai
for a file that says `using_api`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import MINUTE, Provider, truthy
from auth.providers.grant import Refreshed, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

API_BASE_URL = "https://api.x.ai/v1"


@dataclass(frozen=True)
class Xai(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        if not token.data.get("base_url") and truthy(token.data.get("using_api")):
            return {"base_url": API_BASE_URL}
        return {}

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        url = str(token.get("token_endpoint") or self.token_url)
        body, fields = await refresh_token_grant(self, cred, token, client, overrides, url=url)
        if "expires_in" in body:
            fields["expires_in"] = body["expires_in"]
        if isinstance(body.get("id_token"), str):
            fields["id_token"] = body["id_token"]
        return refreshed(token, fields)


PROVIDER = Xai(
    "xai",
    "oauth",
    wire="openai-responses",
    families=("grok-*",),
    listing=("grok-code-fast-1", "grok-4"),
    marker=":black_circle:",
    file_type="xai",
    base_url="https://cli-chat-proxy.grok.com/v1",
    lead=5 * MINUTE,
    token_url="https://auth.x.ai/oauth2/token",
    client_id="b1a00492-073a-47ea-816f-4c329264a828",
)
