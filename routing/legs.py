"""One attempt of a client request on one credential: what goes upstream, what comes back.

Pure functions over bytes, shared by mitmproxy's own first attempt and the proxy's retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

from routing.endpoints import Kind
from routing.router import PROVIDER_FORMATS, Route
from routing.upstream import ClientRequest, UpstreamTarget, target
from translators import translate
from translators.canonical import Request
from translators.errors import error_body
from translators.formats import Format
from translators.passthrough import replace_model
from translators.reasoning import split_suffix

_JSON = "application/json"
_SSE = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Leg:
    route: Route
    client_format: Format
    upstream: Format
    target: UpstreamTarget
    body: bytes
    # The canonical request when translating (formats differ, or a reasoning suffix had to be
    # applied); None for byte-for-byte pass-through.
    request: Request | None = None
    # Set when the proxy answers itself (a token estimate for targets that cannot count).
    local_answer: bytes | None = None

    @property
    def translated(self) -> bool:
        return self.request is not None

    @property
    def description(self) -> str:
        if self.request is None:
            return f"none ({self.client_format.value} passthrough)"
        return f"{self.client_format.value} -> {self.upstream.value}"


def plan(client: ClientRequest, route: Route, overrides: Mapping[str, str]) -> Leg:
    """The attempt of `client` on `route`. Raises `translate.TranslationError` (a 400)."""
    fmt = client.endpoint.format
    upstream = PROVIDER_FORMATS[route.credential.provider]
    base_model, reasoning = split_suffix(route.model)
    t = target(route.credential, client, base_model, upstream, overrides)
    counting = client.endpoint.kind is Kind.COUNT_TOKENS

    if upstream is fmt and reasoning is None:
        body = client.body
        if fmt is not Format.GEMINI and client.parsed is not None:  # Gemini: model in the path
            body = replace_model(client.body, client.parsed, route.model)
        return Leg(route, fmt, upstream, t, body)

    request = translate.decode_request(fmt, client.parsed or {}, route.model, client.stream)
    if counting and upstream in (Format.OPENAI_CHAT, Format.OPENAI_RESPONSES):
        estimate = translate.count_body(fmt, translate.estimate_tokens(client.body))
        return Leg(route, fmt, upstream, t, b"", request, estimate)
    if counting:
        body = translate.count_request(upstream, request)
    else:
        body = translate.encode_request(upstream, request)
    return Leg(route, fmt, upstream, t, body, request)


def request_headers(leg: Leg) -> dict[str, str]:
    """Headers a translated request needs beyond the credential's."""
    if leg.request is None:
        return {}
    headers = {"content-type": _JSON, "accept-encoding": "identity"}
    if leg.upstream is Format.ANTHROPIC:
        headers["anthropic-version"] = "2023-06-01"
    return headers


def stream_content_type(client: ClientRequest) -> str:
    if client.endpoint.format is Format.GEMINI and not gemini_sse(client):
        return _JSON
    return _SSE


def gemini_sse(client: ClientRequest) -> bool:
    return ("alt", "sse") in client.query


def stream_translator(leg: Leg, client: ClientRequest) -> translate.StreamTranslator:
    assert leg.request is not None
    sse = client.endpoint.format is not Format.GEMINI or gemini_sse(client)
    return translate.StreamTranslator(leg.upstream, client.endpoint.format, leg.request, sse)


def whole_response(leg: Leg, client: ClientRequest, status: int, body: bytes) -> tuple[str, bytes]:
    """A complete upstream response (status, decoded body) as the client's format expects it:
    (content type, body). Raises ValueError when the upstream body cannot be read."""
    fmt = client.endpoint.format
    if status >= 400:
        return _JSON, error_body(fmt, status, translate.translate_error(leg.upstream, body))
    if client.endpoint.kind is Kind.COUNT_TOKENS:
        return _JSON, translate.count_response(leg.upstream, fmt, body)
    if client.stream:
        translator = stream_translator(leg, client)
        return stream_content_type(client), b"".join(translator(body) + translator(b""))
    return _JSON, translate.translate_response(leg.upstream, fmt, body)
