"""Model names and paths from clients, before any of them gets near an upstream URL.

A model name ends up in upstream paths (`/v1beta/models/{model}:generateContent`, Vertex's
`.../publishers/google/models/{model}:{action}`), so a name that could change the path (`../`,
`?`, `#`, `%2e`, a backslash, control characters) is refused with a 400 before routing, and what
is accepted is still percent-encoded as one path segment (`segment`).

`/` is allowed between non-empty segments: `work/gemini-2.5-pro` names a configured prefix, and
OpenAI-compatible upstreams serve ids such as `meta-llama/llama-3.3-70b` (OpenRouter, Together,
Fireworks' `accounts/fireworks/models/...`), which travel in the body only.
"""

from __future__ import annotations

import re
import urllib.parse

MAX_MODEL_LENGTH = 200

# What model ids are made of, across vendors: `claude-sonnet-4-5[1m]`, `gemini-2.5-pro(high)`,
# `claude-3-5-sonnet@20240620`, `llama3.1:8b`, `us.anthropic.claude-3-5-sonnet-v2:0`,
# `anthropic/claude-3.5-sonnet:beta`, `qwen3+thinking`.
_MODEL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:@()\[\]+/-]*")
# A `.` or `..` segment, its dots or its slashes percent-encoded or not (servers that decode
# `%2F` before resolving dot segments exist).
_DOT_SEGMENT = re.compile(r"(?:^|/|%2f)(?:\.|%2e){1,2}(?:/|%2f|$)", re.IGNORECASE)


def _character(c: str) -> str:
    if c.isspace() or not c.isprintable():
        return f"a whitespace or control character (U+{ord(c):04X})"
    if not c.isascii():
        return f"the non-ASCII character {c!r} (U+{ord(c):04X})"
    return f"the character {c!r}"


def model_problem(model: str) -> str | None:
    """Why `model` cannot be a model name, or None when it can."""
    if not model:
        return "the model name is empty"
    if len(model) > MAX_MODEL_LENGTH:
        return f"the model name is longer than {MAX_MODEL_LENGTH} characters"
    if (m := _MODEL_CHARACTERS.match(model)).end() < len(model):
        return f"the model name contains {_character(model[m.end()])}, which no model name has"
    for part in model.split("/"):
        if not part:
            return "the model name has an empty path segment (a leading, trailing or doubled '/')"
        if part in (".", ".."):
            return "the model name has a '.' or '..' path segment"
    return None


def segment(value: str) -> str:
    """`value` as one URL path segment: `/`, `?`, `#`, `%` and the rest percent-encoded."""
    return urllib.parse.quote(value, safe="")


def path_problem(path: str) -> str | None:
    """Why a client's request path must not be forwarded onto another base URL (a dot segment,
    plain or percent-encoded, would climb out of the base's path; a backslash is a separator to
    some servers), or None."""
    if _DOT_SEGMENT.search(path):
        return "the request path has a '.' or '..' segment"
    if "\\" in path or "%5c" in path.lower():
        return "the request path has a backslash"
    return None
