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
        pattern = re.compile(rb'("model"\s*:\s*)' + re.escape(json.dumps(old).encode()))
        edited, count = pattern.subn(
            lambda m: m.group(1) + json.dumps(model).encode(), body, count=1
        )
        if count:
            try:
                if json.loads(edited) == wanted:
                    return edited
            except ValueError:
                pass
    return json.dumps(wanted, ensure_ascii=False, separators=(",", ":")).encode()
