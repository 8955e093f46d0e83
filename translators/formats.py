"""The wire formats the proxy speaks, on the client side and the upstream side."""

from __future__ import annotations

import enum


class Format(enum.Enum):
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    # Client-only: the legacy Completions API (`/v1/completions`); no provider is reached in it.
    OPENAI_COMPLETIONS = "openai-completions"

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Format.OPENAI_CHAT: "OpenAI Chat Completions",
    Format.OPENAI_RESPONSES: "OpenAI Responses",
    Format.ANTHROPIC: "Anthropic Messages",
    Format.GEMINI: "Gemini",
    Format.OPENAI_COMPLETIONS: "OpenAI Completions (legacy)",
}

# Formats only clients speak: always translated, never an upstream, never passed through.
CLIENT_ONLY = frozenset({Format.OPENAI_COMPLETIONS})
