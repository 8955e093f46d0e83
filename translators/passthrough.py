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
    old = parsed.get("model")
    if old == model:
        return body
    wanted = {**parsed, "model": model}
    if isinstance(old, str):
        # The old value as the client may have spelled it: escaped or raw UTF-8.
        for spelling in {json.dumps(old), json.dumps(old, ensure_ascii=False)}:
            pattern = re.compile(rb'("model"\s*:\s*)' + re.escape(spelling.encode("utf-8", "surrogatepass")))
            replacement = json.dumps(model, ensure_ascii=False).encode("utf-8", "surrogatepass")
            edited, count = pattern.subn(lambda m: m.group(1) + replacement, body, count=1)
            if count:
                try:
                    if json.loads(edited) == wanted:
                        return edited
                except ValueError:
                    pass
    # ASCII escapes keep lone surrogates (valid in JSON text) encodable.
    return json.dumps(wanted, separators=(",", ":")).encode()
