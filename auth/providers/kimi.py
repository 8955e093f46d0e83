"""Kimi Code subscription (device-code OAuth): Anthropic Messages with the Kimi CLI's identity
and the X-Msh-* device headers of the login."""

from __future__ import annotations

import platform
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential
from auth.providers.base import MINUTE, Login, Provider, text
from auth.providers.grant import Refreshed, refresh_token_grant, refreshed

if TYPE_CHECKING:
    import httpx

    from auth.tokens import TokenFile

# The official Kimi CLI's identity (auth.kimi.com and api.kimi.com expect it); the login and
# every API call send the same X-Msh-* device headers, with the file's `device_id`.
PLATFORM = "kimi_cli"
VERSION = "1.40.0"
USER_AGENT = f"KimiCLI/{VERSION}"


def device_model() -> str:
    system = {"Darwin": "macOS"}.get(platform.system(), platform.system() or "Unknown")
    return f"{system} {platform.machine() or 'unknown'}".strip()


def device_headers(device_id: str) -> dict[str, str]:
    """Kimi's X-Msh-* device headers, for the login and the API calls alike."""
    name = re.sub(r"[^\x20-\x7e]", "", socket.gethostname()) or "unknown"
    return {
        "X-Msh-Platform": PLATFORM,
        "X-Msh-Version": VERSION,
        "X-Msh-Device-Name": name,
        "X-Msh-Device-Model": device_model(),
        "X-Msh-Os-Version": platform.release() or "unknown",
        "X-Msh-Device-Id": device_id,
    }


@dataclass(frozen=True)
class Kimi(Provider):
    def read(self, token: TokenFile) -> dict[str, Any]:
        return {"device_id": text(token.data, "device_id")}

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        # The device identity the login registered (the official Kimi CLI's headers).
        headers = device_headers(str(token.get("device_id") or ""))
        _, fields = await refresh_token_grant(self, cred, token, client, overrides, headers=headers,
                                              keep=("token_type", "scope"))
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        # As CLIProxyAPI's Kimi executor: the CLI's identity replaces the client's.
        out = {"user-agent": USER_AGENT}
        out.update({k.lower(): v for k, v in device_headers(cred.device_id).items() if v})  # no id: none sent
        return out

    def upstream_model(self, model: str) -> str:
        # CLIProxyAPI's Kimi executor strips its `kimi-` prefix and a `[1m]` context marker.
        return model.removeprefix("kimi-").replace("[1m]", "")


PROVIDER = Kimi(
    "kimi",
    "oauth",
    wire="anthropic",
    families=("kimi-*",),
    listing=("kimi-k2", "kimi-k2-thinking"),
    marker=":orange_square:",
    file_type="kimi",
    base_url="https://api.kimi.com/coding",
    lead=5 * MINUTE,
    token_url="https://auth.kimi.com/api/oauth/token",
    client_id="17e5f671-d194-4dfb-9706-5516cb48c098",
    login=Login("kimi", "Kimi", "auth.login.kimi"),
)
