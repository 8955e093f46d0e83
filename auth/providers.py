"""Provider facts for OAuth and service-account credentials: hosts, client ids, refresh leads,
default models.

Public constants from the vendors' own CLIs (as CLIProxyAPI uses them). Every URL here is an
absolute vendor URL; callers apply `upstream-overrides` (routing.upstream.redirect) before
dialling it.
"""

from __future__ import annotations

import hashlib
import hmac
import platform
import re
import socket
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

HOUR = 3600.0
MINUTE = 60.0

# The auth-dir `type` of a token file -> the pool's provider name. A legacy `gemini` token file
# is a Gemini CLI (Code Assist) login, not a Gemini API key, hence its own provider name.
FILE_TYPES = {
    "claude": "claude",
    "codex": "codex",
    "gemini": "gemini-cli",
    "antigravity": "antigravity",
    "qwen": "qwen",
    "kimi": "kimi",
    "iflow": "iflow",
    "vertex": "vertex",
    "xai": "xai",
}


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    name: str
    # Refresh this long before the access token expires.
    lead: float
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    # Where requests go (before `upstream-overrides`); a file's `base_url` replaces it.
    base_url: str = ""


CLAUDE = OAuthProvider(
    "claude",
    lead=4 * HOUR,
    token_url="https://platform.claude.com/v1/oauth/token",
    client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    base_url="https://api.anthropic.com",
)
CODEX = OAuthProvider(
    "codex",
    lead=5 * 24 * HOUR,
    token_url="https://auth.openai.com/oauth/token",
    client_id="app_EMoamEEZ73f0CkXaXp7hrann",
    base_url="https://chatgpt.com/backend-api/codex",
)
GEMINI_CLI = OAuthProvider(
    "gemini-cli",
    # Gemini CLI refreshes lazily: when expired, or about to be.
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
    client_id="681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
    client_secret="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",
    base_url="https://cloudcode-pa.googleapis.com",
)
# Antigravity's Code Assist hosts, in CLIProxyAPI's order (antigravityBaseURLFallbackOrder): the
# daily host first. A file's `base_url` replaces both. Requests go to the first only: the proxy
# does not fall back to the second on the same credential (a failure moves to the next one).
ANTIGRAVITY_BASE_URLS = ("https://daily-cloudcode-pa.googleapis.com", "https://cloudcode-pa.googleapis.com")
ANTIGRAVITY = OAuthProvider(
    "antigravity",
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
    client_id="1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    client_secret="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",
    base_url=ANTIGRAVITY_BASE_URLS[0],
)
QWEN = OAuthProvider(
    "qwen",
    lead=20 * MINUTE,
    token_url="https://chat.qwen.ai/api/v1/oauth2/token",
    client_id="f0304373b74a44d2b584a3fb70ca9e56",
    base_url="https://portal.qwen.ai/v1",
)
KIMI = OAuthProvider(
    "kimi",
    lead=5 * MINUTE,
    token_url="https://auth.kimi.com/api/oauth/token",
    client_id="17e5f671-d194-4dfb-9706-5516cb48c098",
    base_url="https://api.kimi.com/coding",
)
IFLOW = OAuthProvider(
    "iflow",
    lead=24 * HOUR,
    token_url="https://iflow.cn/oauth/token",
    client_id="10009311001",
    client_secret="4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW",
    base_url="https://apis.iflow.cn/v1",
)
VERTEX = OAuthProvider(
    "vertex",
    # Minted access tokens live an hour; a new one is minted this long before.
    lead=5 * MINUTE,
    token_url="https://oauth2.googleapis.com/token",
)
XAI = OAuthProvider(
    "xai",
    lead=5 * MINUTE,
    token_url="https://auth.x.ai/oauth2/token",
    client_id="b1a00492-073a-47ea-816f-4c329264a828",
    base_url="https://cli-chat-proxy.grok.com/v1",
)

PROVIDERS = {p.name: p for p in (CLAUDE, CODEX, GEMINI_CLI, ANTIGRAVITY, QWEN, KIMI, IFLOW, VERTEX, XAI)}

# iFlow: after a token refresh, the API key requests use comes from the user info.
IFLOW_USER_INFO_URL = "https://iflow.cn/api/oauth/getUserInfo"
XAI_API_BASE_URL = "https://api.x.ai/v1"
VERTEX_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
VERTEX_DEFAULT_LOCATION = "us-central1"
CODEX_REFRESH_SCOPE = "openid profile email"

# Claude Code OAuth tokens are only accepted on the Messages API with this beta flag.
CLAUDE_OAUTH_BETA = "oauth-2025-04-20"
# Headers the Codex backend expects from its CLI; sent only when the client sent none.
CODEX_DEFAULT_HEADERS = {"originator": "codex_cli_rs", "accept": "text/event-stream"}
QWEN_DEFAULT_HEADERS = {
    "x-dashscope-authtype": "qwen-oauth",
    "x-dashscope-cachecontrol": "enable",
}
# iFlow (CLIProxyAPI's iflow_executor.go at f5dc6483d^): every request names the CLI, a fresh
# session id and a millisecond timestamp, signed with the API key.
IFLOW_USER_AGENT = "iFlow-Cli"

# Kimi: the official Kimi CLI's identity (auth.kimi.com and api.kimi.com expect it); the login
# and every API call send the same X-Msh-* device headers, with the file's `device_id`.
KIMI_PLATFORM = "kimi_cli"
KIMI_VERSION = "1.40.0"
KIMI_USER_AGENT = f"KimiCLI/{KIMI_VERSION}"

# Antigravity: CLIProxyAPI's floor for the Antigravity version it reports (internal/misc/
# antigravity_version.go); a file's `user_agent` replaces the User-Agent.
ANTIGRAVITY_VERSION = "2.9.1"
ANTIGRAVITY_USER_AGENT = f"antigravity/hub/{ANTIGRAVITY_VERSION} darwin/arm64"
ANTIGRAVITY_NODE_CLIENT = "google-api-nodejs-client/10.3.0"
ANTIGRAVITY_GOOG_API_CLIENT = "gl-node/22.21.1"

# Claude's token endpoint sits behind Cloudflare: look like Claude Code's own (axios) calls.
CLAUDE_OAUTH_HEADERS = {"accept": "application/json, text/plain, */*", "user-agent": "axios/1.15.2"}

# Model ids each provider serves without a `models` list: wildcard families (any new release)
# and the ids listed on /v1/models. OAuth claude and codex share the API keys' tables.
FAMILIES = {
    "gemini-cli": ("gemini-*",),
    "antigravity": ("gemini-*",),
    "vertex": ("gemini-*",),
    "qwen": ("qwen*",),
    "kimi": ("kimi-*",),
    "iflow": ("qwen3-*", "kimi-k2*", "deepseek-*", "glm-*", "iflow-*"),
    "xai": ("grok-*",),
}
DEFAULT_LISTING = {
    "gemini-cli": ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    "antigravity": ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview"),
    "vertex": ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"),
    "qwen": ("qwen3-coder-plus", "qwen3-coder-flash"),
    "kimi": ("kimi-k2", "kimi-k2-thinking"),
    "iflow": ("qwen3-coder-plus", "kimi-k2", "deepseek-v3.2", "glm-4.6"),
    "xai": ("grok-code-fast-1", "grok-4"),
}


def upstream_model(provider: str, model: str) -> str:
    """The id a provider's API knows a model by, when it differs from the pool's (CLIProxyAPI's
    Kimi executor strips its `kimi-` prefix and a `[1m]` context marker)."""
    if provider == "kimi":
        return model.removeprefix("kimi-").replace("[1m]", "")
    return model


def iflow_signature(api_key: str, user_agent: str, session_id: str, timestamp_ms: int) -> str:
    """Hex HMAC-SHA256 keyed by the API key over `user_agent:session_id:timestamp_ms`."""
    payload = f"{user_agent}:{session_id}:{timestamp_ms}".encode()
    return hmac.new(api_key.encode(), payload, hashlib.sha256).hexdigest()


def iflow_headers(api_key: str, *, session_id: str = "", timestamp_ms: int | None = None) -> dict[str, str]:
    """The headers an iFlow API call carries besides the key (a new session id per call)."""
    session_id = session_id or f"session-{uuid.uuid4()}"
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    out = {"user-agent": IFLOW_USER_AGENT, "session-id": session_id, "x-iflow-timestamp": str(stamp)}
    if api_key:
        out["x-iflow-signature"] = iflow_signature(api_key, IFLOW_USER_AGENT, session_id, stamp)
    return out


def kimi_device_model() -> str:
    system = {"Darwin": "macOS"}.get(platform.system(), platform.system() or "Unknown")
    return f"{system} {platform.machine() or 'unknown'}".strip()


def kimi_device_headers(device_id: str) -> dict[str, str]:
    """Kimi's X-Msh-* device headers, for the login and the API calls alike."""
    name = re.sub(r"[^\x20-\x7e]", "", socket.gethostname()) or "unknown"
    return {
        "X-Msh-Platform": KIMI_PLATFORM,
        "X-Msh-Version": KIMI_VERSION,
        "X-Msh-Device-Name": name,
        "X-Msh-Device-Model": kimi_device_model(),
        "X-Msh-Os-Version": platform.release() or "unknown",
        "X-Msh-Device-Id": device_id,
    }


def lead_time(provider: str) -> float:
    spec = PROVIDERS.get(provider)
    return spec.lead if spec else 5 * MINUTE


def vertex_base_url(location: str) -> str:
    if not location or location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def redirect(url: str, overrides: Mapping[str, str]) -> str:
    """Apply `upstream-overrides` (vendor host -> base URL) to an absolute URL."""
    if not overrides:
        return url
    parts = urllib.parse.urlsplit(url)
    base = overrides.get((parts.hostname or "").lower())
    if base is None:
        return url
    target = urllib.parse.urlsplit(base)
    path = target.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((target.scheme, target.netloc, path, parts.query, ""))
