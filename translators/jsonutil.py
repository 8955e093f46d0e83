"""Compact JSON as the wire formats write it.

One encoder, made once: `json.dumps` with non-default arguments builds a new `JSONEncoder` on
every call, and the stream encoders call this once per event.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # the C encoder, where the interpreter has it
from typing import Any

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact(value: Any) -> str:
    return _COMPACT.encode(value)


def json_string(text: str) -> bytes:
    """`text` as a JSON string, UTF-8 encoded: the bytes `compact(text).encode()` makes, for the
    stream encoders' templates (one call into C, no encoder dispatch)."""
    return encode_basestring(text).encode()


# Bounds the work on a long cut-off text: each attempt is one parse.
_PARTIAL_ATTEMPTS = 32


def partial_object(raw: str) -> dict[str, Any]:
    """What a JSON object cut off part way says so far, as a streaming client's partial parser
    reads it: open strings and brackets closed, a half-written member left out. {} if nothing."""
    try:
        value = json.loads(raw)
    except ValueError:
        pass
    else:
        return value if isinstance(value, dict) else {}
    closers: list[str] = []
    in_string = escaped = False
    commas: list[tuple[int, str]] = []  # (position of a member-separating comma, closers there)
    for i, ch in enumerate(raw):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if closers:
                closers.pop()
        elif ch == ",":
            commas.append((i, "".join(reversed(closers))))
    whole = raw[:-1] if escaped else raw
    attempts = [whole + ('"' if in_string else "") + "".join(reversed(closers))]
    attempts += [raw[:at] + closed for at, closed in reversed(commas[-_PARTIAL_ATTEMPTS:])]
    for attempt in attempts:
        try:
            value = json.loads(attempt)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}
