"""Translation between any two formats through the canonical model.

Same-format traffic never comes here: it passes through byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Request,
    Response,
    Start,
    StopReason,
    StreamError,
    Text,
    Thinking,
    ToolCall,
    Usage,
    cut_arguments,
    cut_off,
)
from translators import custom_tools
from translators.codec import codec
from translators.formats import Format
from translators.jsonutil import compact
from translators.reasoning import split_suffix


class TranslationError(ValueError):
    """A request the target format cannot express without changing the answer, or one that is
    not a request of its format at all (a 400)."""


# Deep nesting is refused by the recursion guards of the JSON parser and of the codecs, not by
# walking every body (a walk costs half as much as parsing it): what trips them is a 400.
NESTED_TOO_DEEPLY = "the request body is nested too deeply"


def _dumps(obj: Any) -> bytes:
    return compact(obj).encode()


def decode_request(fmt: Format, body: dict[str, Any], model: str, stream: bool) -> Request:
    """The client's request in canonical form, with the routed upstream `model`.

    A `model(high)` / `model(16384)` suffix becomes the reasoning request, unless the body
    already asks for reasoning itself.
    """
    try:
        request = codec(fmt).decode_request(body)
    except ValueError as e:  # what the client asked cannot be translated: a 400, not a 500
        raise TranslationError(str(e)) from None
    except RecursionError:
        raise TranslationError(NESTED_TOO_DEEPLY) from None
    if not any(message.parts for message in request.messages):
        # Sent on, it would be answered as if the client had said nothing.
        raise TranslationError(
            f"the request holds no conversation: its {_CONVERSATION[fmt]} decode to no message content"
        )
    base, reasoning = split_suffix(model)
    request.model = base
    request.stream = stream
    if reasoning is not None and request.reasoning is None:
        request.reasoning = reasoning
    return request


_CONVERSATION = {
    Format.OPENAI_CHAT: "messages",
    Format.OPENAI_RESPONSES: "input items",
    Format.ANTHROPIC: "messages",
    Format.GEMINI: "contents",
    Format.OPENAI_COMPLETIONS: "prompt",
}


def encode_request(fmt: Format, request: Request) -> bytes:
    try:
        return _dumps(codec(fmt).encode_request(request))
    except ValueError as e:
        raise TranslationError(str(e)) from None
    except RecursionError:
        raise TranslationError(NESTED_TOO_DEEPLY) from None


def translate_response(upstream: Format, client: Format, body: bytes, request: Request | None = None) -> bytes:
    """An upstream's whole answer in the client's format. `request` (the client's, decoded)
    tells which tools are custom, so that their calls reach the client as custom calls."""
    response = codec(upstream).decode_response(json.loads(body))
    return encode_response(client, response, request)


def encode_response(client: Format, response: Response, request: Request | None = None) -> bytes:
    return _dumps(codec(client).encode_response(custom_tools.mark(response, request)))


def translate_error(upstream: Format, body: bytes) -> str:
    """The message of an upstream error body, whatever its shape."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or "upstream error"
    return codec(upstream).error_message(parsed) or json.dumps(parsed)[:500]


class StreamTranslator:
    """mitmproxy's stream callable: fed each upstream chunk, returns the client's chunks.

    Called once more with b"" at the end of the stream, to flush and terminate. Returns a
    list, empty when a chunk completed no event: an empty *bytes* chunk would be written as
    HTTP/1.1's zero-length terminating chunk and end the client's response early.
    """

    __slots__ = ("_decoder", "_encoder", "_origin", "usage", "error")

    def __init__(self, upstream: Format, client: Format, request: Request, sse: bool = True):
        self._decoder = codec(upstream).stream_decoder()
        self._encoder = codec(client).stream_encoder(request, sse)
        self._origin: str | None = upstream.value  # stamped on Start, then None
        # How the stream ended, once it has (the decoders end with a Finish or a StreamError):
        # the Finish's usage, or the error's message.
        self.usage: Usage | None = None
        self.error: str | None = None

    def __call__(self, chunk: bytes) -> list[bytes]:
        encode = self._encoder.encode
        if chunk:
            events = self._decoder.feed(chunk)
            if not events:
                return []
            if self._origin is not None:
                self._stamp_origin(events)
            last = events[-1]
            if type(last) is Finish or type(last) is StreamError:
                self._ended(last)
            # One event per chunk is the usual case: no list, no join.
            out = encode(last) if len(events) == 1 else b"".join([encode(e) for e in events])
        else:
            events = self._decoder.close()
            for event in events:
                if type(event) is Finish or type(event) is StreamError:
                    self._ended(event)
            out = b"".join([encode(e) for e in events]) + self._encoder.close()
        return [out] if out else []

    def _ended(self, event: Finish | StreamError) -> None:
        if isinstance(event, Finish):
            self.usage = event.usage
        else:
            self.error = event.message

    def _stamp_origin(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Start):
                event.origin, self._origin = self._origin, None
                return


def accumulate(events: Iterable[Event], origin: str | None = None) -> Response:
    """The whole response a canonical event stream describes (for a non-stream client).

    `origin` (the upstream Format.value) is recorded on signatures, as a decoder would.
    """
    response = Response(id="", model="")
    open_parts: dict[int, Text | Thinking | ToolCall] = {}
    arguments: dict[int, list[str]] = {}
    last_raw = ""  # the arguments of the last call, as they arrived, should it be cut off
    for event in events:
        if isinstance(event, Start):
            response.id, response.model, response.created = event.id, event.model, event.created
            if event.usage:
                response.usage = event.usage
        elif isinstance(event, BlockStart):
            part: Text | Thinking | ToolCall
            if event.kind == "text":
                part = Text("")
            elif event.kind == "thinking":
                part = Thinking("")
            else:
                part = ToolCall(event.id or "", event.name or "")
                arguments[event.index] = []
            open_parts[event.index] = part
            response.parts.append(part)
        elif isinstance(event, Delta):
            part = open_parts[event.index]
            if isinstance(part, ToolCall):
                arguments[event.index].append(event.arguments)
                if event.signature:
                    part.signature, part.origin = event.signature, origin
            else:
                part.text += event.text
                if event.signature and isinstance(part, Thinking):
                    part.signature, part.origin = event.signature, origin
        elif isinstance(event, BlockStop):
            part = open_parts.pop(event.index)
            if isinstance(part, ToolCall):
                raw = last_raw = "".join(arguments.pop(event.index))
                try:
                    part.arguments = json.loads(raw) if raw else {}
                except ValueError:
                    part.arguments = {"_raw": raw}
        elif isinstance(event, Finish):
            response.stop_reason = event.stop_reason
            response.stop_sequence = event.stop_sequence
            if isinstance(cut := cut_off(response), ToolCall):
                cut.arguments = cut_arguments(last_raw)
            if event.usage:
                response.usage = event.usage
        elif isinstance(event, StreamError):
            response.stop_reason = StopReason.ERROR
    return response


# -- token counting ----------------------------------------------------------------------------
# Only Anthropic and Gemini count tokens upstream; other targets get a local estimate.

_NOT_COUNTED = ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata")


def count_request(upstream: Format, request: Request) -> bytes:
    try:
        body = codec(upstream).encode_request(request)
        if upstream is Format.GEMINI:
            return _dumps({"generateContentRequest": {"model": f"models/{request.model}", **body}})
        for key in _NOT_COUNTED:
            body.pop(key, None)
        return _dumps(body)
    except ValueError as e:
        raise TranslationError(str(e)) from None
    except RecursionError:
        raise TranslationError(NESTED_TOO_DEEPLY) from None


def count_response(upstream: Format, client: Format, body: bytes) -> bytes:
    parsed = json.loads(body)
    tokens = parsed.get("totalTokens", 0) if upstream is Format.GEMINI else parsed.get("input_tokens", 0)
    return count_body(client, int(tokens))


def count_body(client: Format, tokens: int) -> bytes:
    if client is Format.GEMINI:
        return _dumps({"totalTokens": tokens})
    return _dumps({"input_tokens": tokens})


def estimate_tokens(body: bytes) -> int:
    """A rough count for targets with no counting endpoint: about 4 bytes per token."""
    return max(1, len(body) // 4)
