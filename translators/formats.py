"""The wire formats the proxy speaks, on the client side and the upstream side."""

from __future__ import annotations

import enum


class Format(enum.Enum):
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Format.OPENAI_CHAT: "OpenAI Chat Completions",
    Format.OPENAI_RESPONSES: "OpenAI Responses",
    Format.ANTHROPIC: "Anthropic Messages",
    Format.GEMINI: "Gemini",
}
