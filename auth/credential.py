"""A credential the pool can hand out: who it is, what it serves, and the secret it carries."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ModelName:
    """An upstream model id and the id clients may use instead."""

    name: str
    alias: str = ""

    @property
    def public(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True, slots=True)
class Credential:
    provider: str  # "claude" | "gemini" | "codex" | "openai-compatibility"
    source: str  # where it was defined, e.g. "claude-api-key[1]"; shown to users
    secret: str = field(repr=False)
    base_url: str = ""
    prefix: str = ""
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    models: tuple[ModelName, ...] = ()
    excluded_models: tuple[str, ...] = ()
    # Set for `openai-compatibility` entries: the service's configured name.
    service: str = ""
    # Stable across config reloads, so cooldowns survive an edit elsewhere in the file.
    id: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(
            f"{self.provider}\0{self.base_url}\0{self.secret}".encode()
        ).hexdigest()
        object.__setattr__(self, "id", f"{self.provider}:{digest[:12]}")

    @property
    def label(self) -> str:
        """How logs and mitmweb name this credential: never more than the last 4 characters."""
        if not self.secret:
            return f"{self.source} (no key)"
        tail = self.secret[-4:] if len(self.secret) >= 12 else "****"
        return f"{self.source} (…{tail})"

    def excludes(self, model: str) -> bool:
        model = model.lower()
        return any(fnmatch.fnmatchcase(model, pattern.lower()) for pattern in self.excluded_models)
