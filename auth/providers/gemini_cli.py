"""Gemini CLI subscription (Gemini Code Assist, Google sign-in): Gemini inside the Code Assist
envelope on cloudcode-pa, with the account's Code Assist project.

Its token files have the `type` "gemini"; legacy ones nest the OAuth token under `token`, with
their own client and token endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import Tool, MINUTE, Login, Provider
from auth.providers.grant import (
    Refreshed,
    access_token,
    call,
    expiry_fields,
    new_string,
    now,
    refreshed,
    require_refresh_token,
)
from auth.tokens import EXPIRY_KEYS

if TYPE_CHECKING:
    import httpx

    from auth.login.session import Session
    from auth.tokens import TokenFile

GEMINI_FAMILIES = ("gemini-*",)


@dataclass(frozen=True)
class CodeAssistProvider(Provider):
    """A Google login that calls Code Assist: it needs the account's project."""

    def read(self, token: TokenFile) -> dict[str, Any]:
        project = token.data.get("project_id") or ""
        return {"project_id": str(project).split(",")[0].strip()}

    def needs_project(self, cred: Credential) -> bool:
        return not cred.project_id and bool(cred.secret)


@dataclass(frozen=True)
class GeminiCli(CodeAssistProvider):
    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        nested = token.data.get("token") if isinstance(token.data.get("token"), dict) else {}
        refresh = require_refresh_token(cred, token)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": str(nested.get("client_id") or self.client_id),
            "client_secret": str(nested.get("client_secret") or self.client_secret),
        }
        url = str(nested.get("token_uri") or self.token_url)
        body = await call(client, cred.provider, "POST", url, overrides, (refresh, token.access_token), data=form)
        when = now()
        access = access_token(cred.provider, body)
        if not nested:
            fields = {"access_token": access}
            if rotated := new_string(body, "refresh_token"):
                fields["refresh_token"] = rotated
            return refreshed(token, {**fields, **expiry_fields(body, when)})
        new_token = {**nested, "access_token": access}
        if rotated := new_string(body, "refresh_token"):
            new_token["refresh_token"] = rotated
        if isinstance(body.get("token_type"), str):
            new_token["token_type"] = body["token_type"]
        if expiry := expiry_fields(body, when):
            new_token["expiry"] = expiry["expired"]
        # A stale top-level expiry would win over the nested one when the file is read.
        return refreshed(token, {"token": new_token}, drop=EXPIRY_KEYS)

    def discover_project(self, session: Session, access_token: str) -> str:
        from auth.login import gemini

        return gemini.setup_project(session, access_token)


PROVIDER = GeminiCli(
    "gemini-cli",
    "oauth",
    wire="gemini",
    families=GEMINI_FAMILIES,
    listing=("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    marker=":blue_square:",
    file_type="gemini",
    base_url="https://cloudcode-pa.googleapis.com",
    # Gemini CLI refreshes lazily: when expired, or about to be.
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
    client_id="681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
    client_secret="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",
    code_assist=True,
    code_assist_native=True,
    login=Login("gemini", "Gemini", "auth.login.gemini", options=("project_id",)),
    tool=Tool("gemini", (("NODE_EXTRA_CA_CERTS", "ca"),), "gemini-2.5-pro"),
)
