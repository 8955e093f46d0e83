"""What every wire format provides to the translation hub, and the registry of formats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from translators.canonical import Event, Request, Response
from translators.formats import Format


class StreamDecoder(Protocol):
    """Upstream stream bytes in, canonical events out. One instance per stream."""

    def feed(self, chunk: bytes) -> list[Event]: ...

    def close(self) -> list[Event]:
        """End of the upstream stream. If it ended without its terminal event, the events
        returned close every open block and end with `StreamError` (or `Finish`)."""
        ...


class StreamEncoder(Protocol):
    """Canonical events in, client stream bytes out. One instance per stream."""

    def encode(self, event: Event) -> bytes: ...

    def close(self) -> bytes:
        """End of stream: whatever terminator the format needs, if not already sent."""
        ...


@dataclass(frozen=True, slots=True)
class Codec:
    format: Format
    decode_request: Callable[[dict[str, Any]], Request]
    encode_request: Callable[[Request], dict[str, Any]]
    decode_response: Callable[[dict[str, Any]], Response]
    encode_response: Callable[[Response], dict[str, Any]]
    stream_decoder: Callable[[], StreamDecoder]
    # `sse` is False only for a Gemini client streaming without `alt=sse` (a JSON array).
    stream_encoder: Callable[[Request, bool], StreamEncoder]
    # The human-readable message of an error body in this format (None if it is not one).
    error_message: Callable[[Any], str | None]


def codec(fmt: Format) -> Codec:
    # Imported here: each format module imports this one for `Codec`.
    from translators import (
        anthropic,
        gemini,
        openai_chat,
        openai_completions,
        openai_responses,
    )

    return {
        Format.OPENAI_CHAT: openai_chat.CODEC,
        Format.OPENAI_RESPONSES: openai_responses.CODEC,
        Format.ANTHROPIC: anthropic.CODEC,
        Format.GEMINI: gemini.CODEC,
        Format.OPENAI_COMPLETIONS: openai_completions.CODEC,
    }[fmt]
