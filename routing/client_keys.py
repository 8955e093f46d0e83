"""Labels for the proxy's client keys: what usage rows and log lines call a client by, never
the key itself."""

from __future__ import annotations

import hashlib

from routing.config import Config

# What usage and the log call a client when the listener asks for no key.
NO_KEY = "no-key"


def key_label(sent: str | None, config: Config) -> str:
    """The label of an accepted client key (`key-2`: the second of `api-keys`; `env-key`:
    CLI_PROXY_API_KEY's; NO_KEY when none is required): what usage and logs name it by."""
    global _labels
    if _labels is None or _labels[0] is not config:
        listed = [k for k in config.api_keys if k]
        names = {_digest(k): f"key-{i + 1}" for i, k in reversed(list(enumerate(listed)))}
        for key in config.client_keys[len(listed) :]:
            names.setdefault(_digest(key), "env-key")
        _labels = (config, names)
    # Looked up by digest: what a lookup's timing could tell is about the digest, not the key.
    return NO_KEY if sent is None else _labels[1].get(_digest(sent), NO_KEY)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


_labels: tuple[Config, dict[bytes, str]] | None = None
