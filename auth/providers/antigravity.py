"""Antigravity subscription (Google sign-in with Antigravity's app): Gemini in the Code Assist
envelope, with Antigravity's own envelope fields and User-Agent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import MINUTE, Login, text
from auth.providers.gemini_cli import GEMINI_FAMILIES, CodeAssistProvider
from auth.providers.grant import Refreshed, now, refresh_token_grant, refreshed
from auth.providers.listing import Lister, ListingError, Page, object_of

if TYPE_CHECKING:
    import httpx

    from auth.login.session import Session
    from auth.tokens import TokenFile

# Antigravity's Code Assist hosts, in CLIProxyAPI's order (antigravityBaseURLFallbackOrder): the
# daily host first. A file's `base_url` replaces both. Requests go to the first only: the proxy
# does not fall back to the second on the same credential (a failure moves to the next one).
BASE_URLS = ("https://daily-cloudcode-pa.googleapis.com", "https://cloudcode-pa.googleapis.com")
# CLIProxyAPI's floor for the Antigravity version it reports (internal/misc/
# antigravity_version.go); a file's `user_agent` replaces the User-Agent.
VERSION = "2.9.1"
USER_AGENT = f"antigravity/hub/{VERSION} darwin/arm64"
NODE_CLIENT = "google-api-nodejs-client/10.3.0"
GOOG_API_CLIENT = "gl-node/22.21.1"
ENVELOPE_AGENT = "antigravity"


def user_agent(cred: Credential) -> str:
    """The file's `user_agent`, without the Node client suffix onboarding adds; else Antigravity's
    own (CLIProxyAPI's AntigravityRequestUserAgent)."""
    ua = cred.user_agent.strip()
    if not ua:
        return USER_AGENT
    lower = ua.lower()
    cut = lower.find(" google-api-nodejs-client/")
    if lower.startswith("antigravity/") and cut > 0:
        return ua[:cut].strip()
    return ua


@dataclass(frozen=True)
class Antigravity(CodeAssistProvider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        return {**CodeAssistProvider.read(self, token), "user_agent": text(token.data, "user_agent")}

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        body, fields = await refresh_token_grant(
            self, cred, token, client, overrides, extra={"client_secret": self.client_secret}
        )
        if "expires_in" in body:
            fields["expires_in"] = body["expires_in"]
        fields["timestamp"] = int(now().timestamp() * 1000)
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {"user-agent": user_agent(cred)}

    def envelope_fields(self, model: str) -> dict[str, str]:
        """What CLIProxyAPI's Antigravity executor adds to the envelope (geminiToAntigravity):
        the client name, the request type, and a fresh request id."""
        if "image" in model:
            request_id = f"image_gen/{int(time.time() * 1000)}/{uuid.uuid4()}/12"
            return {"userAgent": ENVELOPE_AGENT, "requestType": "image_gen", "requestId": request_id}
        return {"userAgent": ENVELOPE_AGENT, "requestType": "agent", "requestId": f"agent-{uuid.uuid4()}"}

    def listing_headers(self, cred: Credential) -> dict[str, str]:
        return {**CodeAssistProvider.listing_headers(self, cred), "user-agent": user_agent(cred)}

    def discover_project(self, session: Session, access_token: str) -> str:
        from auth.login import antigravity

        return antigravity.project_id(session, access_token)


def decode_antigravity(raw: bytes) -> Page:
    """Antigravity's `POST /v1internal:fetchAvailableModels`: `{models: {id: {...}}}` (as
    CLIProxyAPI's FetchAntigravityModels reads it); `chat_*` ids are internal, never served."""
    models = object_of(raw).get("models")
    if models is None:
        return Page([])
    if not isinstance(models, dict):
        raise ListingError("`models` is not an object")
    return Page([k for k in models if isinstance(k, str) and not k.startswith("chat_")])


LISTER = Lister(
    "POST", "/v1internal:fetchAvailableModels", decode_antigravity, body=b"{}", headers=(("content-type", "application/json"),)
)

PROVIDER = Antigravity(
    "antigravity",
    "oauth",
    wire="gemini",
    families=GEMINI_FAMILIES,
    listing=("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview"),
    lister=LISTER,
    marker=":purple_circle:",
    file_type="antigravity",
    base_url=BASE_URLS[0],
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
    client_id="1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    client_secret="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",
    code_assist=True,
    login=Login("antigravity", "Antigravity", "auth.login.antigravity"),
)
