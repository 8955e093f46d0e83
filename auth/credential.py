"""A credential the pool can hand out: who it is, what it serves, and the secret it carries."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["api-key", "oauth", "service-account"]


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
    """Immutable: a refreshed OAuth token is a new `Credential` with the same `id`, so that the
    pool's cooldowns (keyed by id) survive the refresh."""

    # The account type's name (auth.providers: `Provider.name`); with `kind` it names the
    # provider module that reads, refreshes and sends for this credential.
    provider: str
    source: str  # where it was defined, e.g. "claude-api-key[1]" or a token file's name
    secret: str = field(repr=False)
    base_url: str = ""
    prefix: str = ""
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    models: tuple[ModelName, ...] = ()
    excluded_models: tuple[str, ...] = ()
    # Set for `openai-compatibility` entries: the service's configured name.
    service: str = ""
    kind: Kind = "api-key"
    # OAuth / service-account credentials: the token file they come from.
    path: str = ""
    email: str = ""
    account_id: str = ""  # Codex: the ChatGPT account (`chatgpt-account-id`)
    project_id: str = ""  # Gemini CLI, Antigravity, Vertex: the Google Cloud project
    location: str = ""  # Vertex: the region
    device_id: str = ""  # Kimi: the device the login registered (X-Msh-Device-Id)
    user_agent: str = ""  # Antigravity: the file's User-Agent override
    expires_at: float | None = None  # the access token's expiry, epoch seconds, when known
    # A refresh failure that retrying cannot fix (`invalid_grant`, a reused refresh token).
    refresh_error: str = ""
    description: str = ""
    websockets: bool = False  # accepted from token files; no WebSocket transport here
    # Upstream proxy for this credential: http(s)://host:port, or "direct"/"none" to bypass the
    # config's global `proxy-url`; "" follows the global one.
    proxy_url: str = ""
    # Vertex: the service account JSON (private key included).
    service_account: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # Stable across config reloads and token refreshes, so cooldowns survive both. Derived from
    # provider, base URL and key for API keys; from provider and file name for token files.
    id: str = ""

    def __post_init__(self) -> None:
        if self.id:
            return
        if self.path:
            name = self.path.rsplit("/", 1)[-1]
            object.__setattr__(self, "id", f"{self.provider}:{name}")
            return
        digest = hashlib.sha256(
            f"{self.provider}\0{self.base_url}\0{self.secret}".encode()
        ).hexdigest()
        object.__setattr__(self, "id", f"{self.provider}:{digest[:12]}")

    @property
    def oauth(self) -> bool:
        """Carries a token the proxy refreshes (OAuth, or minted from a service account)."""
        return self.kind != "api-key"

    @property
    def label(self) -> str:
        """How logs and mitmweb name this credential: never more than the last 4 characters of
        an API key, and nothing of an OAuth token (it changes at every refresh anyway)."""
        if self.kind != "api-key":
            return f"auth file {self.source}"
        if not self.secret:
            return f"{self.source} (no key)"
        tail = self.secret[-4:] if len(self.secret) >= 12 else "****"
        return f"{self.source} (…{tail})"

    def excludes(self, model: str) -> bool:
        model = model.lower()
        return any(fnmatch.fnmatchcase(model, pattern.lower()) for pattern in self.excluded_models)
