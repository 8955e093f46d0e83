"""Which API a listener request speaks, told from its method, path and headers."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from translators.formats import Format


class Kind(enum.Enum):
    GENERATE = "generate"
    COUNT_TOKENS = "count_tokens"
    LIST_MODELS = "list_models"
    GET_MODEL = "get_model"
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: Kind
    format: Format
    # Gemini carries the model and the action in the path: /v1beta/models/{model}:{action}
    model: str | None = None
    action: str = ""
    version: str = "v1beta"
    # Gemini CLI signed in with Google: Code Assist's `/v1internal:{action}`, a Gemini body in an
    # envelope (`{model, project, request}`) and every answer wrapped as `{response, traceId}`.
    # The format stays GEMINI (errors, counts and streams are Gemini's); legs.plan_code_assist
    # unwraps the call and wraps the answers back.
    code_assist: bool = False

    @property
    def streams_by_path(self) -> bool:
        return self.action == "streamGenerateContent"


# The model may carry a `prefix/` (work/gemini-2.5-pro).
_GEMINI_CALL = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^:]+):([A-Za-z]+)$")
_GEMINI_MODEL = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^:]+)$")
_GEMINI_ACTIONS = {
    "generateContent": Kind.GENERATE,
    "streamGenerateContent": Kind.GENERATE,
    "countTokens": Kind.COUNT_TOKENS,
}
# Code Assist (cloudcode-pa.googleapis.com): the model calls only. `:loadCodeAssist`,
# `:onboardUser`, `:listExperiments`... are the account's own business and stay unmatched.
_CODE_ASSIST_CALL = re.compile(r"^/v1internal:([A-Za-z]+)$")

_POST_ROUTES = {
    "/v1/chat/completions": Endpoint(Kind.GENERATE, Format.OPENAI_CHAT),
    "/chat/completions": Endpoint(Kind.GENERATE, Format.OPENAI_CHAT),
    "/v1/responses": Endpoint(Kind.GENERATE, Format.OPENAI_RESPONSES),
    "/responses": Endpoint(Kind.GENERATE, Format.OPENAI_RESPONSES),
    "/v1/completions": Endpoint(Kind.GENERATE, Format.OPENAI_COMPLETIONS),
    "/completions": Endpoint(Kind.GENERATE, Format.OPENAI_COMPLETIONS),
    "/v1/messages": Endpoint(Kind.GENERATE, Format.ANTHROPIC),
    "/v1/messages/count_tokens": Endpoint(Kind.COUNT_TOKENS, Format.ANTHROPIC),
}


def wants_anthropic(headers: Mapping[str, str]) -> bool:
    """Anthropic clients send `anthropic-version`; Claude Code also identifies by User-Agent."""
    return "anthropic-version" in headers or headers.get("user-agent", "").startswith("claude-cli")


def speaks_gemini(headers: Mapping[str, str]) -> bool:
    """google-genai (3.x) calls `/v1/models` too; its headers tell it from OpenAI's SDK."""
    return "x-goog-api-key" in headers or "x-goog-api-client" in headers


def match(method: str, path: str, headers: Mapping[str, str]) -> Endpoint | None:
    """The endpoint `path` (without its query) names, or None for an unknown route."""
    path = path.rstrip("/") or "/"
    if method == "POST":
        if endpoint := _POST_ROUTES.get(path):
            return endpoint
        if m := _GEMINI_CALL.match(path):
            version, model, action = m.groups()
            if kind := _GEMINI_ACTIONS.get(action):
                return Endpoint(kind, Format.GEMINI, model, action, version)
        if (m := _CODE_ASSIST_CALL.match(path)) and (kind := _GEMINI_ACTIONS.get(m.group(1))):
            return Endpoint(kind, Format.GEMINI, None, m.group(1), "v1internal", code_assist=True)
        return None
    if method in ("GET", "HEAD"):
        if path == "/healthz":
            return Endpoint(Kind.HEALTH, Format.OPENAI_CHAT)
        if path in ("/v1beta/models", "/v1alpha/models") or (
            path == "/v1/models" and speaks_gemini(headers)
        ):
            return Endpoint(Kind.LIST_MODELS, Format.GEMINI)
        if path == "/v1/models":
            fmt = Format.ANTHROPIC if wants_anthropic(headers) else Format.OPENAI_CHAT
            return Endpoint(Kind.LIST_MODELS, fmt)
        if (m := _GEMINI_MODEL.match(path)) and (m.group(1) != "v1" or speaks_gemini(headers)):
            return Endpoint(Kind.GET_MODEL, Format.GEMINI, m.group(2), version=m.group(1))
    return None


# The vendor hosts a CLI behind HTTPS_PROXY calls, by the API they speak.
_HOST_FORMATS = {
    "api.anthropic.com": Format.ANTHROPIC,
    "generativelanguage.googleapis.com": Format.GEMINI,
    "cloudcode-pa.googleapis.com": Format.GEMINI,
    "api.openai.com": Format.OPENAI_CHAT,
    "chatgpt.com": Format.OPENAI_RESPONSES,
}


def guess_format(path: str, headers: Mapping[str, str], host: str = "") -> Format:
    """The error shape to answer in when the route itself is unknown or refused; `host`, for an
    intercepted call, the vendor host it was sent to."""
    if fmt := _HOST_FORMATS.get(host):
        return fmt
    if path.startswith(("/v1beta", "/v1alpha", "/v1internal")) or speaks_gemini(headers):
        return Format.GEMINI
    if path.startswith("/v1/messages") or wants_anthropic(headers):
        return Format.ANTHROPIC
    return Format.OPENAI_CHAT


def client_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The proxy API key a client sent, in any of the ways the official SDKs send one."""
    if auth := headers.get("authorization"):
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else auth.strip()
    for name in ("x-api-key", "x-goog-api-key"):
        if value := headers.get(name):
            return value
    return query.get("key") or query.get("auth_token")
