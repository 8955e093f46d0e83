"""Writing a finished login to the auth directory, once, atomically (`auth.tokens.save_token_file`).

Signing the same account in again rewrites its file: the new tokens win, and the settings a user
may have added by hand (prefix, priority, proxy, excluded models...) are kept, as CLIProxyAPI's
`MergeExistingAuthMetadata` keeps them. Anything else the old file held (old tokens, the
proxy's recorded refresh failure `cliproxy_refresh_error`, `disabled`) goes: a fresh login is a
working credential again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from auth.login.errors import LoginError
from auth.login.session import Record
from auth.tokens import TokenFile, save_token_file

# The per-credential settings of CLIProxyAPI's auth files (its file synthesizer), which belong
# to the user rather than to the login.
USER_SETTINGS = frozenset(
    {
        "prefix", "proxy_url", "priority", "weight", "note", "excluded_models", "model_aliases",
        "request_retry", "disable_cooling", "request_scoped_errors", "headers", "base_url",
        "websockets", "user_agent", "refresh_interval_seconds", "cloak_mode", "cloak_strict_mode",
        "cloak_sensitive_words", "cloak_cache_user_id", "fingerprint_profile", "timezone",
        "attributes", "label",
    }
)

_UNSAFE = re.compile(r"[/\\\x00-\x1f]")


def safe_file_name(name: str) -> str:
    """A file name that stays inside the auth directory and that the watcher does not skip as
    a temporary file (a leading dot, another suffix)."""
    name = _UNSAFE.sub("_", name).strip()
    if not name.endswith(".json"):
        name += ".json"
    if name.startswith("."):
        name = "_" + name[1:]
    return name


@dataclass(frozen=True, slots=True)
class Saved:
    path: Path
    replaced: bool  # the same account signed in again


def save(auth_dir: Path, record: Record) -> Saved:
    path = auth_dir.expanduser() / safe_file_name(record.file_name)
    data = dict(record.data)
    replaced = path.exists()
    if replaced:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            for key, value in old.items():
                if key in USER_SETTINGS and key not in data:
                    data[key] = value
    try:
        save_token_file(TokenFile(path, data))
    except OSError as e:
        raise LoginError(
            f"signed in, but cannot write {path} ({e.strerror or e}); check that the auth "
            "directory (auth-dir in config.yaml) is writable, then run the login again"
        ) from None
    return Saved(path, replaced)
