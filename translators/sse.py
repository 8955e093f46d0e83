"""Incremental Server-Sent Events reading and writing.

The reader is fed raw network chunks, which split events (and UTF-8 characters) anywhere; it
returns each event once its blank line has arrived. Hand-rolled because the stream hook is a
synchronous per-chunk callable, which the SSE libraries (built around a response iterator) do not
fit; it follows the WHATWG parsing rules for the fields an LLM stream uses.

It runs once per streamed event, so it walks the chunk by offsets, slicing out only the `data`
values (kept as bytes: `json.loads` reads them as they are) and the `event` name.
"""

from __future__ import annotations

import json
from typing import Any

from translators.jsonutil import compact


class SSEEvent:
    """One event: its `event:` name ("" if none) and its `data:` lines, joined, as bytes."""

    __slots__ = ("event", "raw")

    def __init__(self, event: str, raw: bytes) -> None:
        self.event = event
        self.raw = raw

    @property
    def data(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def json(self) -> Any:
        return loads(self.raw)

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEEvent):
            return NotImplemented
        return self.event == other.event and self.raw == other.raw


# The C scanner `json.loads` ends in, called directly: `loads` first sniffs the encoding of
# bytes and matches whitespace around the value with regular expressions, which costs as much as
# scanning a small event.
_scan = json.JSONDecoder().scan_once


def loads(raw: bytes) -> Any:
    """`json.loads` of an event's data, straight from its bytes (UTF-8, as SSE is; an invalid
    sequence reads as U+FFFD, as a text decoder would). ValueError for anything not JSON."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # whitespace first, or not JSON: the general path tells which
    if end != len(text):
        return json.loads(text)  # whitespace after, or more than one value
    return value


class SSEReader:
    __slots__ = ("_buffer", "_event", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk` (possibly none)."""
        return [SSEEvent(name.decode("utf-8", "replace"), raw) for name, raw in self.frames(chunk)]

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event without its blank line still counts."""
        return [SSEEvent(name.decode("utf-8", "replace"), raw) for name, raw in self.close_frames()]

    def frames(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """`feed` for the stream decoders: each event as (its name, its data), both bytes.

        The buffer keeps what follows the last whole event. An event of one `data:` line, or of
        an `event:` line and a `data:` line (what LLM streams send), is sliced out where it
        lies; anything else goes through the general line loop."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if 0x0D in buffer:  # (an int: a plain memchr, unlike a bytes needle)
            # "\r\n" line ends read as "\n" (no field value holds a line end); a lone "\r"
            # (mixed line ends, or a "\r\n" split between chunks) takes the general loop.
            buffer = buffer.replace(b"\r\n", b"\n")
            if 0x0D in buffer:
                self._buffer = b""
                return self._lines(buffer, [])
        find, startswith = buffer.find, buffer.startswith
        frames: list[tuple[bytes, bytes]] = []
        start = 0
        while (end := find(b"\n\n", start)) >= 0:
            second = find(b"\n", start, end) + 1  # where the event's second line begins, if any
            if self._data:  # the event began in an earlier chunk
                self._lines(buffer[start : end + 2], frames)
            elif not second and startswith(b"data:", start):
                value = start + 6 if buffer[start + 5] == 0x20 else start + 5  # (inlined `_value`)
                frames.append((self._event, buffer[value:end]))
                self._event = b""
            elif (
                second
                and startswith(b"event:", start)
                and startswith(b"data:", second)
                and find(b"\n", second, end) < 0
            ):
                frames.append((_value(buffer, start + 6, second - 1), _value(buffer, second + 5, end)))
                self._event = b""
            else:
                self._lines(buffer[start : end + 2], frames)
            start = end + 2
        self._buffer = buffer[start:] if start < len(buffer) else b""
        return frames

    def _lines(self, buffer: bytes, frames: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The general reading, line by line; a last line without its end stays buffered."""
        find, startswith = buffer.find, buffer.startswith
        data = self._data
        start = 0
        while (end := find(b"\n", start)) >= 0:
            stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end  # "\r\n"
            if stop == start:  # a blank line ends the event
                if data:
                    frames.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data.clear()
                self._event = b""
            elif startswith(b"data:", start):
                data.append(_value(buffer, start + 5, stop))
            elif startswith(b"event:", start):
                self._event = _value(buffer, start + 6, stop)
            elif buffer[start] != 0x3A:  # not a ":" comment / keep-alive
                # A field without a colon has an empty value; other fields (id, retry) carry
                # nothing an LLM stream uses.
                name = buffer[start:stop]
                if name == b"data":
                    data.append(b"")
                elif name == b"event":
                    self._event = b""
            start = end + 1
        if start < len(buffer):
            self._buffer += buffer[start:]
        return frames

    def close_frames(self) -> list[tuple[bytes, bytes]]:
        """`close` for the stream decoders."""
        buffer, self._buffer = self._buffer, b""
        frames = self._lines(buffer + b"\n", []) if buffer else []
        if self._data:
            frames.append((self._event, b"\n".join(self._data)))
            self._event = b""
            self._data.clear()
        return frames


def _value(buffer: bytes, start: int, stop: int) -> bytes:
    """A field's value: from after its colon (and the one space that may follow) to `stop`."""
    if start < stop and buffer[start] == 0x20:
        start += 1
    return buffer[start:stop]


def sse_bytes(data: Any, event: str | None = None) -> bytes:
    """One SSE frame carrying `data` as compact JSON (or as is, for a str)."""
    payload = data if isinstance(data, str) else compact(data)
    if event:
        return f"event: {event}\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()
