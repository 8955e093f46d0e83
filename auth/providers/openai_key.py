"""An OpenAI API key (`codex-api-key` in config.yaml): the OpenAI Responses API."""

from __future__ import annotations

from auth.providers import listing
from auth.providers.base import Provider

PROVIDER = Provider(
    "codex",
    "api-key",
    config_key="codex-api-key",
    wire="openai-responses",
    families=("gpt-*", "o1*", "o3*", "o4*", "codex-*", "chatgpt-*"),
    listing=("gpt-5", "gpt-5-codex", "gpt-5-mini"),
    lister=listing.OPENAI,
    marker=":green_circle:",
    base_url="https://api.openai.com/v1",
)
