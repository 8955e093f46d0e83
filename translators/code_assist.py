"""Gemini CLI's Code Assist API (`cloudcode-pa.googleapis.com/v1internal:{action}`): Gemini
bodies inside an envelope.

Requests go as `{model, project, request: <Gemini body>}` (`countTokens`: `{request: {model:
"models/<m>", contents}}`); answers, and every stream event, come back as `{response: <Gemini
body>, traceId}`. A Gemini client's body is embedded byte for byte; its answers are unwrapped
event by event. Other client formats go through the Gemini codec, whose decoders read the
envelope themselves.
"""

from __future__ import annotations

import json
from typing import Any

from translators.gemini import unwrap_code_assist
from translators.sse import SSEReader


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def wrap_raw(body: bytes, model: str, project: str) -> bytes:
    """The envelope around a Gemini request body, whose bytes stay as the client sent them."""
    head = b'{"model":' + _dumps(model.removeprefix("models/"))
    if project:
        head += b',"project":' + _dumps(project)
    return head + b',"request":' + (body.strip() or b"{}") + b"}"


def count_body(gemini_body: dict[str, Any], model: str) -> bytes:
    """A Code Assist `countTokens` body from a Gemini `countTokens` or `generateContent` body."""
    inner = gemini_body.get("generateContentRequest") or gemini_body.get("generate_content_request")
    source = inner if isinstance(inner, dict) else gemini_body
    contents = source.get("contents") or []
    return _dumps({"request": {"model": f"models/{model.removeprefix('models/')}", "contents": contents}})


def unwrap_body(body: bytes) -> bytes:
    """A whole Code Assist answer as the Gemini answer inside it."""
    parsed = json.loads(body)
    if isinstance(parsed, dict):
        return _dumps(unwrap_code_assist(parsed))
    if isinstance(parsed, list):  # a stream read whole, as a JSON array
        return _dumps([unwrap_code_assist(p) if isinstance(p, dict) else p for p in parsed])
    return body


class Unwrapper:
    """mitmproxy's stream callable for a Gemini client on a Code Assist upstream: SSE events in,
    the Gemini events inside out, as SSE or as the streamed JSON array (no `alt=sse`)."""

    __slots__ = ("_closed", "_opened", "_reader", "_sse")

    def __init__(self, sse: bool = True) -> None:
        self._reader = SSEReader()
        self._sse = sse
        self._opened = False
        self._closed = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self._closed:
            return []
        frames = self._reader.feed(chunk) if chunk else self._reader.close()
        out = b"".join([self._frame(f.data) for f in frames])
        if not chunk:
            self._closed = True
            if not self._sse:
                out += b"]" if self._opened else b"[]"
        return [out] if out else []

    def _frame(self, data: str) -> bytes:
        data = data.strip()
        if not data or data == "[DONE]":
            return b""
        try:
            parsed = json.loads(data)
        except ValueError:
            return b""
        payload = _dumps(unwrap_code_assist(parsed) if isinstance(parsed, dict) else parsed)
        if self._sse:
            return b"data: " + payload + b"\r\n\r\n"
        if self._opened:
            return b",\r\n" + payload
        self._opened = True
        return b"[" + payload
