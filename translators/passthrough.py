"""Same-format traffic: the body goes upstream byte for byte, except a resolved model name."""

from __future__ import annotations

import json
import re


def replace_model(body: bytes, parsed: dict, model: str) -> bytes:
    """Return `body` with its top-level `"model"` value set to `model`.

    Only the bytes of the value change, so thinking signatures, key order and whitespace survive.
    If the textual edit cannot be shown to hit the top-level key (a nested `"model"` appearing
    first, an escaped spelling), fall back to re-serialising, which keeps the meaning.
    """
    return replace_field(body, parsed, "model", model)


def replace_field(body: bytes, parsed: dict, key: str, value: str) -> bytes:
    """Return `body` with its top-level string field `key` set to `value`, as `replace_model`
    does (the field is added, by re-serialising, when the body lacks it)."""
    old = parsed.get(key)
    if old == value:
        return body
    wanted = {**parsed, key: value}
    if isinstance(old, str):
        # The old value as the client may have spelled it: escaped or raw UTF-8.
        name = re.escape(json.dumps(key).encode())
        for spelling in {json.dumps(old), json.dumps(old, ensure_ascii=False)}:
            pattern = re.compile(rb"(" + name + rb"\s*:\s*)" + re.escape(spelling.encode("utf-8", "surrogatepass")))
            replacement = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
            edited, count = pattern.subn(lambda m: m.group(1) + replacement, body, count=1)
            if count:
                try:
                    if json.loads(edited) == wanted:
                        return edited
                except ValueError:
                    pass
    # ASCII escapes keep lone surrogates (valid in JSON text) encodable.
    return json.dumps(wanted, separators=(",", ":")).encode()
