"""Compact JSON as the wire formats write it.

One encoder, made once: `json.dumps` with non-default arguments builds a new `JSONEncoder` on
every call, and the stream encoders call this once per event.
"""

from __future__ import annotations

import json
from typing import Any

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact(value: Any) -> str:
    return _COMPACT.encode(value)
