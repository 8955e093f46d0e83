"""A Claude API key (`claude-api-key` in config.yaml): Anthropic Messages, `x-api-key`."""

from __future__ import annotations

from dataclasses import dataclass

from auth.credential import Credential
from auth.providers import listing
from auth.providers.base import Provider


@dataclass(frozen=True)
class ClaudeKey(Provider):
    def auth_headers(self, cred: Credential) -> dict[str, str]:
        return {"x-api-key": cred.secret} if cred.secret else {}


PROVIDER = ClaudeKey(
    "claude",
    "api-key",
    config_key="claude-api-key",
    wire="anthropic",
    families=("claude-*",),
    listing=("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"),
    lister=listing.ANTHROPIC,
    marker=":orange_circle:",
    base_url="https://api.anthropic.com",
)
