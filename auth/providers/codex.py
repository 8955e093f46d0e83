"""ChatGPT / Codex subscription (OAuth): the Codex backend's Responses API, streamed only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers import openai_key
from auth.providers.listing import Lister, Page, ids_at, list_at, object_of
from auth.providers.base import Tool, HOUR, Login, Provider, jwt_claims, with_defaults
from auth.providers.grant import Refreshed, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

REFRESH_SCOPE = "openid profile email"
# Headers the Codex backend expects from its CLI; sent only when the client sent none.
DEFAULT_HEADERS = {"originator": "codex_cli_rs", "accept": "text/event-stream"}
AUTH_CLAIM = "https://api.openai.com/auth"
# The Codex backend lists only the models a client at least this recent may use (codex-rs
# ModelsClient sends its own version the same way).
CLIENT_VERSION = "0.99.0"


def account_id(data: Mapping[str, Any]) -> str:
    """The ChatGPT account: the file's `account_id`, else the ID token's claim."""
    if isinstance(data.get("account_id"), str) and data["account_id"]:
        return data["account_id"]
    auth = jwt_claims(str(data.get("id_token") or "")).get(AUTH_CLAIM)
    if isinstance(auth, dict) and isinstance(auth.get("chatgpt_account_id"), str):
        return auth["chatgpt_account_id"]
    return ""


@dataclass(frozen=True)
class CodexOAuth(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        return {"account_id": account_id(token.data)}

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        _, fields = await refresh_token_grant(
            self, cred, token, client, overrides, extra={"scope": REFRESH_SCOPE}, keep=("id_token",)
        )
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        out = {"chatgpt-account-id": cred.account_id} if cred.account_id else {}
        return with_defaults(out, DEFAULT_HEADERS, client_headers)

    def listing_headers(self, cred: Credential) -> dict[str, str]:
        headers = {**Provider.listing_headers(self, cred), "originator": DEFAULT_HEADERS["originator"]}
        if cred.account_id:
            headers["chatgpt-account-id"] = cred.account_id
        return headers


def decode_codex(raw: bytes) -> Page:
    """The ChatGPT Codex backend's `GET {base}/models?client_version=`: `{models: [{slug, ...}]}`
    (codex-rs `ModelsResponse`)."""
    return Page(ids_at(list_at(object_of(raw), "models"), "slug"))


LISTER = Lister("GET", "/models", decode_codex, (("client_version", CLIENT_VERSION),))


PROVIDER = CodexOAuth(
    "codex",
    "oauth",
    wire="openai-responses",
    # A login serves what an OpenAI API key serves.
    families=openai_key.PROVIDER.families,
    listing=openai_key.PROVIDER.listing,
    lister=LISTER,
    marker=":green_circle:",
    file_type="codex",
    base_url="https://chatgpt.com/backend-api/codex",
    lead=5 * 24 * HOUR,
    token_url="https://auth.openai.com/oauth/token",
    client_id="app_EMoamEEZ73f0CkXaXp7hrann",
    forced_stream=True,
    login=Login("codex", "ChatGPT (Codex)", "auth.login.codex", options=("device",)),
    tool=Tool("codex", (("CODEX_CA_CERTIFICATE", "bundle"), ("SSL_CERT_FILE", "bundle")), "gpt-5-codex"),
)
