"""One attempt of a client request on one credential: what goes upstream, what comes back.

Pure functions over bytes, shared by mitmproxy's own first attempt and the proxy's retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from auth import providers
from routing.endpoints import Endpoint, Kind
from routing.router import Route
from routing.upstream import (
    ClientRequest,
    UpstreamTarget,
    code_assist,
    forced_stream,
    target,
)
from translators import code_assist as envelope
from translators import translate
from translators.canonical import Image, Request, StopReason, StreamError, ToolResult
from translators.codec import codec
from translators.errors import error_body
from translators.formats import Format
from translators.openai_responses import codex_body
from translators.passthrough import replace_model
from translators.reasoning import split_suffix

_JSON = "application/json"
_SSE = "text/event-stream"


class UpstreamStreamError(ValueError):
    """A stream read whole (for a non-stream client) that ended in an error event."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
    # The upstream wraps Gemini in the Code Assist envelope (Gemini CLI, Antigravity logins).
    envelope: bool = False
    # The upstream answers as a stream although the client did not ask for one (the Codex
    # backend): the stream is read whole and answered as one response.
    aggregate: bool = False
    # The client speaks Code Assist (Gemini CLI signed in with Google): its call was taken out of
    # the envelope, and the answers go back in it. With `envelope` too, nothing converts.
    client_envelope: bool = False

    @property
    def translated(self) -> bool:
        return self.request is not None

    @property
    def converts(self) -> bool:
        """The upstream's answer is not what the client gets byte for byte."""
        return self.request is not None or self.envelope != self.client_envelope or self.aggregate

    @property
    def description(self) -> str:
        client = "code-assist" if self.client_envelope else self.client_format.value
        upstream = "code-assist" if self.envelope else self.upstream.value
        if self.request is None:
            if self.envelope != self.client_envelope:
                return f"{client} -> {upstream} (envelope only)"
            if self.aggregate:
                return f"none ({client} passthrough, upstream stream read whole)"
            return f"none ({client} passthrough)"
        return f"{client} -> {upstream}"


def _codex(body: bytes, parsed: dict) -> bytes:
    """A Responses body as the Codex backend needs it; the client's bytes when already so."""
    wanted = codex_body(parsed)
    return body if wanted == parsed else json.dumps(wanted, ensure_ascii=False, separators=(",", ":")).encode()


def plan(
    client: ClientRequest,
    route: Route,
    overrides: Mapping[str, str],
    request: Request | None = None,
) -> Leg:
    """The attempt of `client` on `route`. Raises `translate.TranslationError` (a 400).

    `request`, the client's request already decoded (and its remote images inlined), is encoded
    as it is instead of being decoded again."""
    try:
        return _plan(client, route, overrides, request)
    except RecursionError:  # a body the parser took, nested too deep to re-read or re-write
        raise translate.TranslationError(translate.NESTED_TOO_DEEPLY) from None


def _plan(
    client: ClientRequest, route: Route, overrides: Mapping[str, str], request: Request | None
) -> Leg:
    if client.endpoint.code_assist:
        return plan_code_assist(client, route, overrides, request)
    fmt = client.endpoint.format
    cred = route.credential
    spec = providers.of(cred)
    upstream = Format(spec.wire)
    # The id sent upstream; `route.model` stays the pool's (cooldowns are keyed by it).
    model = spec.upstream_model(route.model)
    base_model, reasoning = split_suffix(model)
    t = target(cred, client, base_model, upstream, overrides)
    counting = client.endpoint.kind is Kind.COUNT_TOKENS
    wrapped = code_assist(cred)
    aggregate = forced_stream(cred) and not client.stream and not counting

    if upstream is fmt and reasoning is None:
        body = client.body
        if wrapped:
            if counting:
                body = envelope.count_body(client.parsed or {}, base_model)
            else:
                body = envelope.wrap_raw(client.body, base_model, cred.project_id, spec.envelope_fields(base_model))
            return Leg(route, fmt, upstream, t, body, envelope=True)
        if fmt is not Format.GEMINI and client.parsed is not None:  # Gemini: model in the path
            body = replace_model(client.body, client.parsed, model)
        if forced_stream(cred) and not counting:
            body = _codex(body, json.loads(body))
        return Leg(route, fmt, upstream, t, body, aggregate=aggregate)

    if request is None:
        request = translate.decode_request(fmt, client.parsed or {}, model, client.stream)
    if counting and upstream in (Format.OPENAI_CHAT, Format.OPENAI_RESPONSES):
        estimate = translate.count_body(fmt, translate.estimate_tokens(client.body))
        return Leg(route, fmt, upstream, t, b"", request, estimate)
    if counting and wrapped:
        body = envelope.count_body(json.loads(translate.encode_request(upstream, request)), base_model)
    elif counting:
        body = translate.count_request(upstream, request)
    else:
        body = translate.encode_request(upstream, request)
        if wrapped:
            body = envelope.wrap_raw(body, base_model, cred.project_id, spec.envelope_fields(base_model))
        elif forced_stream(cred):
            body = _codex(body, json.loads(body))
    return Leg(route, fmt, upstream, t, body, request, envelope=wrapped, aggregate=aggregate)


_CANONICAL_PARAMETERS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "reasoning",
    "response_format",
    "tool_choice",
    "n",
)


def dropped_parameters(client: ClientRequest, leg: Leg) -> list[str]:
    """What a translated request lost on the way (for a debug log): client fields the hub does
    not model, and parameters the upstream format cannot express. Costs a re-encode and a
    re-decode, so only worth calling when someone reads the answer."""
    if client.endpoint.code_assist and leg.request is not None:
        client = unwrapped(client, providers.of(leg.route.credential).vertex_fields)
    if leg.request is None or leg.envelope or client.endpoint.kind is Kind.COUNT_TOKENS:
        return []
    lost: list[str] = []
    try:
        echoed = codec(client.endpoint.format).encode_request(leg.request)
        lost += sorted(f"{key} (not translated)" for key in (client.parsed or {}) if key not in echoed)
        arrived = codec(leg.upstream).decode_request(json.loads(leg.body))
    except (NotImplementedError, ValueError, RecursionError):
        return lost
    for name in _CANONICAL_PARAMETERS:
        if getattr(leg.request, name) not in (None, []) and getattr(arrived, name) in (None, []):
            lost.append(f"{name} (no {leg.upstream.value} equivalent)")
    return lost


def remote_images(leg: Leg) -> list[Image]:
    """Images given by http(s) URL that the upstream cannot fetch itself: Gemini reads only its
    own file URIs. The proxy fetches them and sends them inline."""
    if leg.request is None or leg.upstream is not Format.GEMINI:
        return []
    found: list[Image] = []
    for message in leg.request.messages:
        for part in message.parts:
            for item in part.content if isinstance(part, ToolResult) else (part,):
                url = (item.url or "").lower() if isinstance(item, Image) and item.data is None else ""
                if url.startswith(("http://", "https://")):
                    found.append(item)
    return found


def request_headers(leg: Leg) -> dict[str, str]:
    """Headers a translated request needs beyond the credential's."""
    if not leg.converts:
        return {}
    headers = {"accept-encoding": "identity"}
    if leg.request is not None or leg.envelope:
        headers["content-type"] = _JSON
    if leg.request is not None and leg.upstream is Format.ANTHROPIC:
        headers["anthropic-version"] = "2023-06-01"
    return headers


def stream_content_type(client: ClientRequest) -> str:
    if client.endpoint.format is Format.GEMINI and not gemini_sse(client):
        return _JSON
    return _SSE


def gemini_sse(client: ClientRequest) -> bool:
    return ("alt", "sse") in client.query


def stream_translator(leg: Leg, client: ClientRequest) -> Callable[[bytes], list[bytes]]:
    if leg.client_envelope:
        return _code_assist_stream(leg, client)
    sse = client.endpoint.format is not Format.GEMINI or gemini_sse(client)
    if leg.request is None:
        if not leg.envelope:
            raise ValueError("a pass-through leg has no stream translator")
        return envelope.Unwrapper(sse)
    return translate.StreamTranslator(leg.upstream, client.endpoint.format, leg.request, sse)


def _read_stream_whole(leg: Leg, fmt: Format, body: bytes) -> bytes:
    decoder = codec(leg.upstream).stream_decoder()
    events = decoder.feed(body) + decoder.close()
    for event in events:
        if isinstance(event, StreamError):
            raise UpstreamStreamError(event.status or 502, event.message)
    response = translate.accumulate(events, leg.upstream.value)
    if response.stop_reason is StopReason.ERROR:
        raise UpstreamStreamError(502, "the upstream stream ended in an error")
    return translate.encode_response(fmt, response, leg.request)


def whole_response(leg: Leg, client: ClientRequest, status: int, body: bytes) -> tuple[str, bytes]:
    """A complete upstream response (status, decoded body) as the client's format expects it:
    (content type, body). Raises ValueError when the upstream body cannot be read
    (UpstreamStreamError when it is a stream that ended in an error)."""
    if leg.client_envelope:
        return _code_assist_whole(leg, client, status, body)
    fmt = client.endpoint.format
    if status >= 400:
        return _JSON, error_body(fmt, status, translate.translate_error(leg.upstream, body))
    if client.endpoint.kind is Kind.COUNT_TOKENS:
        return _JSON, translate.count_response(leg.upstream, fmt, body)
    if client.stream:
        translator = stream_translator(leg, client)
        return stream_content_type(client), b"".join(translator(body) + translator(b""))
    if leg.aggregate and not body.lstrip().startswith(b"{"):
        return _JSON, _read_stream_whole(leg, fmt, body)
    if leg.request is None:
        if leg.envelope:
            return _JSON, envelope.unwrap_body(body)
        return _JSON, body  # the Codex backend answered JSON after all
    return _JSON, translate.translate_response(leg.upstream, fmt, body, leg.request)


# -- Code Assist clients ---------------------------------------------------------------------------
# Gemini CLI signed in with Google calls `cloudcode-pa.googleapis.com/v1internal:{action}` with a
# Gemini request in an envelope (translators/code_assist.py). The endpoint's format is GEMINI;
# these functions take the call out of the envelope and put the answers back in.


def plan_code_assist(
    client: ClientRequest, route: Route, overrides: Mapping[str, str], request: Request | None = None
) -> Leg:
    """The attempt of a Code Assist client on `route`.

    On a Gemini CLI login the call goes as it came, but for the token and the envelope's project
    (that account's): a pass-through. On any other credential the Gemini request inside is served
    as a Gemini client's would be: as it is to a Gemini API key, in Antigravity's own envelope to
    an Antigravity login (whose answers, in the same envelope, then pass through), translated for
    other providers; the Gemini answers are wrapped back."""
    cred = route.credential
    spec = providers.of(cred)
    model = spec.upstream_model(route.model)
    counting = client.endpoint.kind is Kind.COUNT_TOKENS
    try:
        same_api = code_assist(cred) and spec.code_assist_native
        if same_api and request is None and split_suffix(model)[1] is None:
            body = envelope.retarget(client.body, client.parsed or {}, model, cred.project_id, counting)
            t = target(cred, client, model, Format.GEMINI, overrides)
            return Leg(route, Format.GEMINI, Format.GEMINI, t, body, envelope=True, client_envelope=True)
        inner = unwrapped(client, spec.vertex_fields)
    except ValueError as e:
        raise translate.TranslationError(str(e)) from None
    return replace(plan(inner, route, overrides, request), client_envelope=True)


def unwrapped(client: ClientRequest, vertex: bool = False) -> ClientRequest:
    """A Code Assist client's call as the Gemini API call inside it. A stream always asks for
    SSE, which the answer's wrapper reads. Raises ValueError for an envelope without a request."""
    ep = client.endpoint
    body, parsed = envelope.unwrap_request(client.parsed or {}, ep.kind is Kind.COUNT_TOKENS, vertex)
    query = client.query
    if client.stream and not gemini_sse(client):
        query = (*query, ("alt", "sse"))
    return replace(
        client,
        endpoint=Endpoint(ep.kind, Format.GEMINI, client.model, ep.action),
        path=f"/v1beta/models/{client.model}:{ep.action}",
        query=query,
        body=body,
        parsed=parsed,
    )


def _code_assist_stream(leg: Leg, client: ClientRequest) -> Callable[[bytes], list[bytes]]:
    if leg.request is None:
        # A Gemini upstream's own SSE (a Code Assist one's, unwrapped first).
        return envelope.Wrapper(gemini_sse(client), envelope.Unwrapper() if leg.envelope else None)
    inner = translate.StreamTranslator(leg.upstream, Format.GEMINI, leg.request, True)
    return envelope.Wrapper(gemini_sse(client), inner)


def _code_assist_whole(leg: Leg, client: ClientRequest, status: int, body: bytes) -> tuple[str, bytes]:
    if client.stream and status < 400:
        translator = _code_assist_stream(leg, client)
        return stream_content_type(client), b"".join(translator(body) + translator(b""))
    content_type, answer = whole_response(replace(leg, client_envelope=False), client, status, body)
    if status >= 400 or client.endpoint.kind is Kind.COUNT_TOKENS:
        return content_type, answer  # Google's error shape and `{totalTokens}`, as Code Assist's
    return content_type, envelope.wrap_body(answer)
