"""Qwen Code subscription (device-code OAuth): Chat Completions at the token's `resource_url`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import MINUTE, Login, Provider, with_defaults
from auth.providers.grant import Refreshed, new_string, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

DEFAULT_HEADERS = {"x-dashscope-authtype": "qwen-oauth", "x-dashscope-cachecontrol": "enable"}


@dataclass(frozen=True)
class Qwen(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        # The API host the token is for, unless the file names a base_url itself.
        resource = token.data.get("resource_url") or ""
        if not resource or token.data.get("base_url"):
            return {}
        return {"base_url": resource if "://" in resource else f"https://{resource}/v1"}

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        body, fields = await refresh_token_grant(self, cred, token, client, overrides)
        if resource := new_string(body, "resource_url"):
            fields["resource_url"] = resource
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        return with_defaults({}, DEFAULT_HEADERS, client_headers)


PROVIDER = Qwen(
    "qwen",
    "oauth",
    wire="openai-chat",
    families=("qwen*",),
    listing=("qwen3-coder-plus", "qwen3-coder-flash"),
    marker=":purple_square:",
    file_type="qwen",
    base_url="https://portal.qwen.ai/v1",
    lead=20 * MINUTE,
    token_url="https://chat.qwen.ai/api/v1/oauth2/token",
    client_id="f0304373b74a44d2b584a3fb70ca9e56",
    login=Login("qwen", "Qwen", "auth.login.qwen", options=("email",)),
)
