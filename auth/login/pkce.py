"""PKCE (RFC 7636, S256) and the random `state` of an authorization request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from auth.providers.base import b64url as _b64url


def challenge_for(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class PKCE:
    verifier: str
    challenge: str
    method: str = "S256"

    @classmethod
    def new(cls) -> PKCE:
        # 32 random bytes -> a 43-character verifier, as CLIProxyAPI and the vendor CLIs make it.
        verifier = _b64url(secrets.token_bytes(32))
        return cls(verifier, challenge_for(verifier))


def new_state() -> str:
    """32 hex characters (CLIProxyAPI's misc.GenerateRandomState)."""
    return secrets.token_hex(16)
