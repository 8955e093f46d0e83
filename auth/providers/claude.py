"""Claude Code subscription (Claude Pro / Max OAuth): Anthropic Messages with the OAuth beta flag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth.credential import Credential
from auth.providers import claude_key, listing
from auth.providers.base import Tool, HOUR, Login, Provider, merge_list_header
from auth.providers.grant import Refreshed, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

# Claude Code OAuth tokens are only accepted on the Messages API with this beta flag.
OAUTH_BETA = "oauth-2025-04-20"
# The token endpoint sits behind Cloudflare: look like Claude Code's own (axios) calls.
OAUTH_HEADERS = {"accept": "application/json, text/plain, */*", "user-agent": "axios/1.15.2"}


@dataclass(frozen=True)
class ClaudeOAuth(Provider):
    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        _, fields = await refresh_token_grant(self, cred, token, client, overrides, headers=OAUTH_HEADERS, as_json=True)
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {"anthropic-beta": merge_list_header(client_headers.get("anthropic-beta"), OAUTH_BETA)}

    def listing_headers(self, cred: Credential) -> dict[str, str]:
        return {**Provider.listing_headers(self, cred), "anthropic-beta": OAUTH_BETA}


PROVIDER = ClaudeOAuth(
    "claude",
    "oauth",
    wire="anthropic",
    # A login serves what a Claude API key serves.
    families=claude_key.PROVIDER.families,
    listing=claude_key.PROVIDER.listing,
    lister=listing.ANTHROPIC,
    marker=":orange_circle:",
    file_type="claude",
    base_url="https://api.anthropic.com",
    lead=4 * HOUR,
    token_url="https://platform.claude.com/v1/oauth/token",
    client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    login=Login("claude", "Claude", "auth.login.claude"),
    tool=Tool("claude", (("NODE_EXTRA_CA_CERTS", "ca"),), "claude-sonnet-4-5"),
)
