"""Gemini CLI's Code Assist API (`cloudcode-pa.googleapis.com/v1internal:{action}`): Gemini
bodies inside an envelope.

Requests go as `{model, project, request: <Gemini body>}` (`countTokens`: `{request: {model:
"models/<m>", contents}}`); answers, and every stream event, come back as `{response: <Gemini
body>, traceId}`. Errors are not wrapped: they have Google's shape, as the Gemini API's do.

Upstream side (a Code Assist credential): a Gemini client's body is embedded byte for byte; its
answers are unwrapped event by event. Other client formats go through the Gemini codec, whose
decoders read the envelope themselves.

Client side (Gemini CLI signed in with Google, intercepted): `retarget` hands its call to another
Code Assist account; `unwrap_request` takes the Gemini call out of the envelope for any other
credential, and `wrap_body` / `Wrapper` put the Gemini answers back in, without parsing them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from translators.gemini import GeminiFramer, unwrap_code_assist
from translators.jsonutil import compact
from translators.passthrough import replace_field
from translators.sse import SSEReader, loads


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def wrap_raw(body: bytes, model: str, project: str, fields: Mapping[str, str] | None = None) -> bytes:
    """The envelope around a Gemini request body, whose bytes stay as the client sent them;
    with the fields an account type adds to it (auth.providers: `envelope_fields`)."""
    model = model.removeprefix("models/")
    head = b'{"model":' + _dumps(model)
    if project:
        head += b',"project":' + _dumps(project)
    for key, value in (fields or {}).items():
        head += b',"' + key.encode() + b'":' + _dumps(value)
    return head + b',"request":' + (body.strip() or b"{}") + b"}"


def count_body(gemini_body: dict[str, Any], model: str) -> bytes:
    """A Code Assist `countTokens` body from a Gemini `countTokens` or `generateContent` body."""
    inner = gemini_body.get("generateContentRequest") or gemini_body.get("generate_content_request")
    source = inner if isinstance(inner, dict) else gemini_body
    contents = source.get("contents") or []
    return _dumps({"request": {"model": f"models/{model.removeprefix('models/')}", "contents": contents}})


def unwrap_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """The Gemini answer inside a Code Assist answer, with the envelope's `traceId` as its
    `responseId`, as Gemini CLI's own converter (`fromGenerateContentResponse`) reads it."""
    inner = unwrap_code_assist(answer)
    trace = answer.get("traceId")
    if inner is answer or not isinstance(trace, str) or not trace:
        return inner
    return {**inner, "responseId": trace}


def unwrap_body(body: bytes) -> bytes:
    """A whole Code Assist answer as the Gemini answer inside it."""
    parsed = json.loads(body)
    if isinstance(parsed, dict):
        return _dumps(unwrap_answer(parsed))
    if isinstance(parsed, list):  # a stream read whole, as a JSON array
        return _dumps([unwrap_answer(p) if isinstance(p, dict) else p for p in parsed])
    return body


class Unwrapper:
    """mitmproxy's stream callable for a Gemini client on a Code Assist upstream: SSE events in,
    the Gemini events inside out, as SSE or as the streamed JSON array (no `alt=sse`)."""

    __slots__ = ("_closed", "_framer", "_reader")

    def __init__(self, sse: bool = True) -> None:
        self._reader = SSEReader()
        self._framer = GeminiFramer(sse)
        self._closed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self._closed:
            return []
        frames = self._reader.feed(chunk) if chunk else self._reader.close()
        out = b"".join([self._frame(f.raw) for f in frames])
        if not chunk:
            self._closed = True
            out += self._framer.end()
        return [out] if out else []

    def _frame(self, data: bytes) -> bytes:
        data = data.strip()
        if not data or data == b"[DONE]":
            return b""
        try:
            parsed = loads(data)
        except ValueError:
            return b""
        payload = _dumps(unwrap_answer(parsed) if isinstance(parsed, dict) else parsed)
        return self._framer.frame(payload)


# -- client side: a Code Assist client served by the pool ---------------------------------------

# Request fields the Gemini API and Vertex do not know ("Unknown name ... Cannot find field").
_CODE_ASSIST_ONLY = frozenset({"session_id"})
_VERTEX_ONLY = frozenset({"labels"})


def envelope_model(parsed: dict[str, Any]) -> str | None:
    """The bare model id a Code Assist call names: the envelope's `model`, or for `countTokens`
    the inner request's `models/<id>`."""
    model = parsed.get("model")
    if not isinstance(model, str) or not model:
        inner = parsed.get("request")
        model = inner.get("model") if isinstance(inner, dict) else None
    if isinstance(model, str) and model:
        return model.removeprefix("models/") or None
    return None


def _encode(value: Any) -> bytes:
    try:
        return compact(value).encode()
    except UnicodeEncodeError:  # a lone surrogate: valid JSON text only as an escape
        return json.dumps(value, separators=(",", ":")).encode()


def unwrap_request(parsed: dict[str, Any], counting: bool, vertex: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The Gemini API body inside a Code Assist call, and its parsed form: the `request` object
    without the fields only Code Assist accepts (`session_id`; `labels` too unless for Vertex;
    for `countTokens`, the inner `model`, which the Gemini API takes from the path).
    Raises ValueError when the envelope holds no request object."""
    inner = parsed.get("request")
    if not isinstance(inner, dict):
        raise ValueError('the Code Assist call has no "request" object')
    drop = _CODE_ASSIST_ONLY if vertex else _CODE_ASSIST_ONLY | _VERTEX_ONLY
    body = {k: v for k, v in inner.items() if k not in drop and not (counting and k == "model")}
    return _encode(body), body


def retarget(body: bytes, parsed: dict[str, Any], model: str, project: str, counting: bool) -> bytes:
    """A Code Assist call handed to another Code Assist account: the envelope's `project` becomes
    that account's (dropped when it has none), and the model the routed id when it differs.
    Every other byte stays as the client sent it."""
    model = model.removeprefix("models/")
    if counting:
        if envelope_model(parsed) != model:  # an alias: the model is inside the request
            inner = parsed.get("request")
            if not isinstance(inner, dict):
                raise ValueError('the Code Assist call has no "request" object')
            return _encode({**parsed, "request": {**inner, "model": f"models/{model}"}})
        return body  # countTokens names no project
    if parsed.get("model") != model:
        body = replace_field(body, parsed, "model", model)
        parsed = {**parsed, "model": model}
    if project:
        return replace_field(body, parsed, "project", project)
    if "project" in parsed:
        return _encode({k: v for k, v in parsed.items() if k != "project"})
    return body


# `"responseId": "<id>"`, which becomes the envelope's traceId (Gemini CLI reads the answer's
# responseId from it).
_RESPONSE_ID = re.compile(rb'"responseId"\s*:\s*"([^"\\]*)"')
_ERROR = re.compile(rb'\{\s*"error"\s*:')


def _trace(payload: bytes) -> bytes:
    at = payload.rfind(b'"responseId"')  # the top-level one comes last
    if at < 0:
        return b""
    found = _RESPONSE_ID.match(payload, at)
    return b',"traceId":"' + found.group(1) + b'"' if found else b""


def wrap_body(body: bytes) -> bytes:
    """A whole Gemini answer (`GenerateContentResponse`) as Code Assist sends it; an error body
    stays as it is."""
    body = body.strip()
    if _ERROR.match(body):
        return body
    return b'{"response":' + body + _trace(body) + b"}"


class Wrapper:
    """mitmproxy's stream callable for a Code Assist client served in Gemini: each Gemini SSE
    event, from the upstream as it is or from `inner` (a translator writing Gemini SSE), goes out
    as `{"response": <event>, "traceId": ...}`, as SSE or as the streamed JSON array (no
    `alt=sse`). Error events go out as they are.

    Byte work only: events are split on their lines and the payload is copied between a fixed
    head and tail, never parsed.
    """

    __slots__ = ("_buffer", "_closed", "_data", "_framer", "_inner")

    def __init__(self, sse: bool = True, inner: Callable[[bytes], list[bytes]] | None = None) -> None:
        self._framer = GeminiFramer(sse)
        self._inner = inner
        self._buffer = b""
        self._data: list[bytes] = []
        self._closed = False

    @property
    def usage(self):
        """The usage `inner` (a translator) saw, if any."""
        return getattr(self._inner, "usage", None)

    @property
    def error(self) -> str | None:
        """The error `inner` (a translator) saw end the stream, if any."""
        return getattr(self._inner, "error", None)

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self._closed:
            return []
        if self._inner is not None:
            out = b"".join([self._feed(piece) for piece in self._inner(chunk)])
        else:
            out = self._feed(chunk) if chunk else b""
        if not chunk:
            self._closed = True
            out += self._end()
        return [out] if out else []

    def _feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end  # without "\r"
            if stop == start:
                if self._data:
                    out.append(self._event())
            elif buffer.startswith(b"data:", start):
                skip = 6 if buffer.startswith(b"data: ", start) else 5
                self._data.append(buffer[start + skip : stop])  # the one copy of the payload
            # `event:`, `id:`, comments: nothing Gemini CLI reads
            start = end + 1
        self._buffer = buffer[start:] if start < len(buffer) else b""
        return b"".join(out)

    def _end(self) -> bytes:
        out = self._feed(b"\n") if self._buffer else b""
        if self._data:
            out += self._event()
        return out + self._framer.end()

    def _event(self) -> bytes:
        data = self._data
        # A payload split over several data lines is one JSON text broken at whitespace.
        payload = (data[0] if len(data) == 1 else b" ".join(data)).strip()
        self._data = []
        if not payload or payload == b"[DONE]":
            return b""
        if _ERROR.match(payload):  # as it is: Gemini CLI reads no response from it
            return self._framer.frame(payload)
        return self._framer.frame(b"".join((b'{"response":', payload, _trace(payload), b"}")))
