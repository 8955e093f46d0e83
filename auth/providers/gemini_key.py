"""A Gemini API key (`gemini-api-key` in config.yaml): the Gemini API, `x-goog-api-key`."""

from __future__ import annotations

from dataclasses import dataclass

from auth.credential import Credential
from auth.providers import listing
from auth.providers.base import Provider


@dataclass(frozen=True)
class GeminiKey(Provider):
    def auth_headers(self, cred: Credential) -> dict[str, str]:
        return {"x-goog-api-key": cred.secret} if cred.secret else {}


PROVIDER = GeminiKey(
    "gemini",
    "api-key",
    config_key="gemini-api-key",
    wire="gemini",
    families=("gemini-*", "gemma-*", "learnlm-*"),
    listing=("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    lister=listing.GEMINI,
    marker=":large_blue_circle:",
    base_url="https://generativelanguage.googleapis.com",
)
