"""Incremental Server-Sent Events reading and writing.

The reader is fed raw network chunks, which split events (and UTF-8 characters) anywhere; it
returns each event once its blank line has arrived. Hand-rolled because the stream hook is a
synchronous per-chunk callable, which the SSE libraries (built around a response iterator) do not
fit; it follows the WHATWG parsing rules for the fields an LLM stream uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from translators.jsonutil import compact


@dataclass(slots=True)
class SSEEvent:
    event: str  # "" when the frame had no `event:` line
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class SSEReader:
    __slots__ = ("_buffer", "_event", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk` (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if event := self._line(line):
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line still counts."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = "", []
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None


def sse_bytes(data: Any, event: str | None = None) -> bytes:
    """One SSE frame carrying `data` as compact JSON (or as is, for a str)."""
    payload = data if isinstance(data, str) else compact(data)
    if event:
        return f"event: {event}\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()
