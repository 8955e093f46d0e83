"""Whether a pass-through stream reached its format's end, and the event saying it did not.

A stream that stops before its terminal event (`[DONE]` or a `finish_reason`, `message_stop`,
`response.completed` / `incomplete` / `failed`, Gemini's `finishReason`, or an error event
the upstream sent itself) was cut off. A client reading it would see a clean end and take a
truncated answer for a complete one; instead it gets its format's own error event last.

Translated streams need none of this: their decoders report the missing end themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from translators.errors import error_body
from translators.formats import Format
from translators.jsonutil import compact

# A JSON key can only appear unescaped outside strings, so these cannot match model text.
_TERMINAL = {
    Format.OPENAI_CHAT: re.compile(rb'data: ?\[DONE\]|"finish_reason": ?"|"error": ?\{'),
    Format.ANTHROPIC: re.compile(rb'"type": ?"(?:message_stop|error)"'),
    Format.OPENAI_RESPONSES: re.compile(
        rb'"type": ?"(?:response\.(?:completed|incomplete|failed)|error)"'
    ),
    Format.GEMINI: re.compile(rb'"finishReason": ?"|"error": ?\{'),
}
# Longer than any marker: what of the previous chunk must be seen with the next one.
_OVERLAP = 48
# A Responses stream's lifecycle events must all name the same response (the SDK checks), and
# its events are numbered: the failure event continues both.
_RESPONSE_ID = re.compile(rb'"response": ?\{[^{}]*?"id": ?"([^"\\]{1,200})"')
_SEQUENCE = re.compile(rb'"sequence_number": ?(\d{1,12})')


def cut_event(
    fmt: Format, message: str, sse: bool = True, *, response_id: str = "resp_cut", sequence: int = 0
) -> bytes:
    """`fmt`'s own way of ending a stream with an error (502: the upstream failed)."""
    if fmt is Format.ANTHROPIC:
        return b"event: error\ndata: " + error_body(fmt, 502, message) + b"\n\n"
    if fmt is Format.OPENAI_RESPONSES:
        failed = {
            "type": "response.failed",
            "sequence_number": sequence,
            "response": {
                "id": response_id,
                "object": "response",
                "created_at": 0,
                "status": "failed",
                "error": {"code": "server_error", "message": message},
                "output": [],
            },
        }
        return b"event: response.failed\ndata: " + compact(failed).encode() + b"\n\n"
    body = error_body(fmt, 502, message)
    if fmt is Format.GEMINI and not sse:
        return b",\n" + body + b"]"  # the last element of the streamed JSON array
    return b"data: " + body + b"\n\n"


class TerminalWatch:
    """mitmproxy's stream callable for a stream passed through byte for byte.

    Chunks go on untouched; at the end (b""), if no terminal event went by, the format's error
    event follows, with the reason `why()` gives (the relay's account of the cut, if any)."""

    __slots__ = ("_pattern", "_tail", "_seen", "_fmt", "_sse", "_why", "_responses", "_id", "_sequence")

    def __init__(self, fmt: Format, sse: bool, why: Callable[[], str | None]) -> None:
        self._pattern = _TERMINAL.get(fmt)
        self._tail = b""
        self._seen = self._pattern is None
        self._fmt = fmt
        self._sse = sse
        self._why = why
        self._responses = fmt is Format.OPENAI_RESPONSES
        self._id: bytes | None = None
        self._sequence = -1

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        if chunk:
            if not self._seen:
                search = self._pattern.search  # type: ignore[union-attr]
                if search(chunk) or (self._tail and search(self._tail + chunk[:_OVERLAP])):
                    self._seen = True
                else:
                    # Enough of the recent bytes to find a marker that small chunks split.
                    tail = chunk if len(chunk) >= _OVERLAP else self._tail + chunk
                    self._tail = tail[-_OVERLAP:]
                    if self._responses:
                        self._follow_responses(chunk)
            return chunk
        if self._seen:
            return []
        why = self._why() or "the upstream ended the stream early"
        message = f"the answer was cut off: {why}"
        if self._responses:
            response_id = (self._id or b"resp_cut").decode("utf-8", "replace")
            return [cut_event(self._fmt, message, response_id=response_id, sequence=self._sequence + 1)]
        return [cut_event(self._fmt, message, self._sse)]

    def _follow_responses(self, chunk: bytes) -> None:
        if self._id is None and (found := _RESPONSE_ID.search(chunk)):
            self._id = found.group(1)
        if numbers := _SEQUENCE.findall(chunk):
            self._sequence = int(numbers[-1])
