"""The token usage an upstream reported, found without parsing the answer that carries it.

Each format puts its usage in one object near the end of its answer: `usage` (Chat
Completions, Responses, Anthropic) or `usageMetadata` (Gemini, Code Assist inside its envelope).
A JSON key can only appear unescaped outside strings, and the real usage object comes after
the content (whose tool arguments may be objects with any keys), so the last occurrence of the
key is the one: only that small object is decoded, by the format's own codec.

Streams passed through untouched (and Code Assist envelopes) are followed by `UsageScan`, one
byte search per chunk; translated streams have their decoder's `Finish` usage instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from translators import anthropic, gemini, openai_chat, openai_responses
from translators.canonical import Usage
from translators.formats import Format

_KEY = b'"usage"'
_GEMINI_KEY = b'"usageMetadata"'
# More than any usage object (Gemini's, with its per-modality lists, is the longest).
_CAP = 4096
_VALUE = re.compile(rb'\s*:\s*([{n])')
_DECODER = json.JSONDecoder()
# Larger than any real count, small enough for SQLite's integers and for sums of many.
_MAX_TOKENS = 10**12


_DECODERS = {
    Format.ANTHROPIC: anthropic.decode_usage,
    Format.GEMINI: gemini._decode_usage,
    Format.OPENAI_RESPONSES: openai_responses._usage,
    Format.OPENAI_CHAT: openai_chat._decode_usage,
}


def _decode(fmt: Format, raw: dict[str, Any]) -> Usage | None:
    """`raw` read by `fmt`'s own codec, every count checked."""
    decoder = _DECODERS.get(fmt)
    if decoder is None:
        return None
    try:
        return sane(decoder(raw))
    except (AttributeError, TypeError, ValueError, OverflowError):  # details of the wrong type
        return None


def sane(usage: Usage | None) -> Usage | None:
    """A copy of `usage` with every count a plausible int (a hostile upstream's strings,
    floats, negatives and huge numbers become 0), or None."""
    if usage is None:
        return None
    return Usage(**{name: _count(getattr(usage, name)) for name in _COUNTS})


_COUNTS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")


def _count(value: Any) -> int:
    return value if type(value) is int and 0 <= value <= _MAX_TOKENS else 0


def _object_at(data: bytes, key_end: int) -> dict[str, Any] | None:
    """The JSON object that is the value of the key ending at `key_end` (None if null, cut or
    not JSON)."""
    match = _VALUE.match(data, key_end)
    if match is None or match.group(1) != b"{":
        return None
    text = data[match.start(1) : match.start(1) + _CAP].decode("utf-8", "replace")
    try:
        value, _ = _DECODER.raw_decode(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _key(fmt: Format) -> bytes:
    return _GEMINI_KEY if fmt is Format.GEMINI else _KEY


def usage_from_body(fmt: Format, body: bytes) -> Usage | None:
    """The usage in a whole answer in `fmt` (an upstream's, not content-encoded), or None."""
    key = _key(fmt)
    at = body.rfind(key)
    if at < 0:
        return None
    raw = _object_at(body, at + len(key))
    return None if raw is None else _decode(fmt, raw)


class UsageScan:
    """Follows a stream in `fmt` chunk by chunk and tells its usage at the end.

    Keeps the bytes from the last usage key on (and, for Anthropic, whose `message_start`
    holds the input counts and `message_delta` the final ones, from the first), growing them
    with the next chunks until they surely hold the object. A key split between chunks is
    found in the few bytes kept of the previous ones. Decodes only in `usage()`."""

    __slots__ = ("_key", "_decode_as", "_first", "_last", "_grow_first", "_grow_last", "_merge", "_tail")

    def __init__(self, fmt: Format) -> None:
        self._decode_as = fmt
        self._key = _key(fmt)
        self._merge = fmt is Format.ANTHROPIC
        self._first = b""
        self._last = b""
        self._grow_first = False
        self._grow_last = False
        self._tail = b""

    def __call__(self, chunk: bytes) -> None:
        if self._grow_last or self._grow_first:
            self._grow(chunk)
        key = self._key
        at = chunk.rfind(key)
        if at >= 0:
            self._found(chunk, at)
        elif self._tail:
            joined = self._tail + chunk[: len(key)]
            at = joined.rfind(key)
            if at >= 0 and at + len(key) > len(self._tail):  # not one already found
                self._found(self._tail[at:] + chunk, 0)
        if len(chunk) >= len(key):
            self._tail = chunk[1 - len(key) :]
        else:
            self._tail = (self._tail + chunk)[1 - len(key) :]

    def _found(self, data: bytes, at: int) -> None:
        value = _VALUE.match(data, at + len(self._key))
        if value is not None and value.group(1) != b"{":
            return  # `"usage": null` (the Chat and Responses streams' early events)
        # An object, or a key at the very end whose value is still to come.
        self._last = data[at : at + _CAP]
        self._grow_last = len(self._last) < _CAP
        if self._merge and not self._first:
            first = data.find(self._key)
            self._first = data[first : first + _CAP]
            self._grow_first = len(self._first) < _CAP

    def _grow(self, chunk: bytes) -> None:
        if self._grow_last:
            self._last += chunk[: _CAP - len(self._last)]
            self._grow_last = len(self._last) < _CAP
        if self._grow_first:
            self._first += chunk[: _CAP - len(self._first)]
            self._grow_first = len(self._first) < _CAP

    def usage(self) -> Usage | None:
        if not self._last:
            return None
        size = len(self._key)
        raw = _object_at(self._last, size)
        if raw is None:
            return None
        if self._first:
            start = _object_at(self._first, size)
            if start is not None:
                raw = {**start, **raw}
        return _decode(self._decode_as, raw)
