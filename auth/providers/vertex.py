"""A Vertex AI service account (token file `type: vertex`): the Gemini API on Vertex, with access
tokens minted from the service account's key (held in memory only)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import MINUTE, Provider, b64url
from auth.providers.gemini_cli import GEMINI_FAMILIES
from auth.providers.grant import Refreshed, RefreshError, access_token, call
from auth.tokens import TokenFileError, shown

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_LOCATION = "us-central1"


def base_url(location: str) -> str:
    if not location or location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def service_account_assertion(sa: Mapping[str, Any], audience: str, now: float) -> str:
    """A signed JWT (RS256) asking Google for a cloud-platform access token."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    header = {"alg": "RS256", "typ": "JWT"}
    if sa.get("private_key_id"):
        header["kid"] = str(sa["private_key_id"])
    claims = {"iss": sa["client_email"], "scope": SCOPE, "aud": audience, "iat": int(now), "exp": int(now) + 3600}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    try:
        key = serialization.load_pem_private_key(str(sa["private_key"]).encode(), password=None)
    except (ValueError, TypeError):
        raise RefreshError("vertex: the service account's private_key cannot be read", terminal=True,
                           code="invalid_private_key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise RefreshError("vertex: the service account's private_key is not an RSA key", terminal=True,
                           code="invalid_private_key")
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


@dataclass(frozen=True)
class Vertex(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        data = token.data
        sa = data.get("service_account")
        if not isinstance(sa, dict) or not sa.get("private_key") or not sa.get("client_email"):
            raise TokenFileError(f"{shown(token.path)}: service_account needs private_key and client_email")
        if not isinstance(sa["private_key"], str) or not isinstance(sa["client_email"], str):
            raise TokenFileError(f"{shown(token.path)}: service_account private_key and client_email must be strings")
        project_id = str(data.get("project_id") or sa.get("project_id") or "")
        if not project_id:
            raise TokenFileError(f"{shown(token.path)}: no project_id")
        return {
            "service_account": sa,
            "project_id": project_id,
            "location": str(data.get("location") or DEFAULT_LOCATION),
            "secret": "",  # minted from the service account, held in memory only
        }

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        sa = cred.service_account
        audience = str(sa.get("token_uri") or self.token_url)
        now = time.time()
        assertion = service_account_assertion(sa, audience, now)
        body = await call(
            client, self.name, "POST", audience, overrides, (assertion,),
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        access = access_token(self.name, body)
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) else 3600.0
        return Refreshed(token, persist=False, secret=access, expires_at=now + lifetime)

    def upstream_base(self, cred: Credential) -> str:
        return cred.base_url or base_url(cred.location)

    def gemini_resource(self, cred: Credential, version: str) -> tuple[str, ...]:
        return ("v1", "projects", cred.project_id, "locations", cred.location or "global", "publishers", "google", "models")


PROVIDER = Vertex(
    "vertex",
    "service-account",
    wire="gemini",
    families=GEMINI_FAMILIES,
    listing=("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    marker=":large_blue_diamond:",
    file_type="vertex",
    # Minted access tokens live an hour; a new one is minted this long before.
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
    vertex_fields=True,
)
