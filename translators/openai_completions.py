"""The legacy OpenAI Completions API (`/v1/completions`), client side only.

No credential speaks this format upstream (OpenAI keeps it for a few instruct models only), so
it is a client-only format (`formats.CLIENT_ONLY`): a completions request is decoded to the
canonical model and encoded for whichever provider serves the model, and the answer comes back
as a `text_completion`. The upstream-side functions (`encode_request`, `decode_response`,
`stream_decoder`) raise `NotImplementedError`.

Mapping decisions:

- `prompt` becomes one user message with one text part. A list of one string is that string; a
  list of several prompts (a batch, one choice per prompt) and token-id prompts cannot be
  translated and raise `ValueError` (a 400), as do `n > 1` and `echo: true`.
- `max_tokens` defaults to 16, the Completions API's own default, when absent or null.
- `stop` (a string or a list), `temperature`, `top_p`, `stream` and
  `stream_options.include_usage` are carried; `suffix`, `logprobs`, `best_of`, `user`, `seed`,
  the penalties and `logit_bias` have no canonical field and are dropped (`best_of` only picks
  among samples; one sample is still an answer).
- Responses carry the text parts only. Thinking is dropped. Tool calls cannot be asked for in
  this API, so one only appears if the provider called a built-in tool: it is dropped too, and
  the finish reason is then "stop" (the API has no tool finish reason). `max_tokens` ends in
  "length", a refusal in "content_filter", everything else in "stop". `logprobs` is null.
- Ids are the upstream's, prefixed with `cmpl-` unless they already carry it; usage is the
  legacy three counts (prompt, completion, total).
- A stream is one `text_completion` chunk per text delta, then a chunk with empty text and the
  finish reason, then (only with `include_usage`) a usage chunk with `choices: []`, then
  `data: [DONE]`; with `include_usage` the other chunks carry `"usage": null`, as OpenAI's do.
  A mid-stream error is a `data: {"error": {...}}` frame (the SDK raises on it), then `[DONE]`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, NoReturn

from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Message,
    Request,
    Response,
    Start,
    StopReason,
    StreamError,
    Text,
    Usage,
)
from translators.codec import Codec
from translators.jsonutil import compact
from translators.errors import error_body
from translators.fields import at, get_bool, get_dict, get_int, get_number, get_stop, get_str
from translators.formats import Format
from translators.openai_chat import error_message

DEFAULT_MAX_TOKENS = 16  # the Completions API's default


_dumps = compact


def _client_only(what: str) -> NoReturn:
    raise NotImplementedError(
        f"{Format.OPENAI_COMPLETIONS.title} is a client-only format: no upstream speaks it, "
        f"so there is no {what}"
    )


# -- requests: completions -> canonical ------------------------------------------------------------


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if prompt is None:
        raise ValueError("'prompt' is required")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        raise ValueError(
            f"'prompt' is a batch of {len(prompt)} prompts; only one prompt per request can be "
            "translated: send them as separate requests"
        )
    if isinstance(prompt, list) and prompt:
        raise ValueError("token-id prompts cannot be translated to other providers; send the prompt as text")
    raise ValueError("'prompt' must be a string or a list of one string")


def decode_request(body: dict[str, Any]) -> Request:
    prompt = _prompt(body.get("prompt"))
    n = get_int(body, "n")
    if n is not None and n > 1:
        raise ValueError(f"n={n}: only one completion per request can be translated; ask for n=1")
    if body.get("echo"):
        raise ValueError("'echo' is not supported: the prompt cannot be echoed with its completion")
    max_tokens = get_int(body, "max_tokens")
    stream = bool(get_bool(body, "stream"))
    stream_options = get_dict(body, "stream_options")
    with at("stream_options"):
        include_usage = get_bool(stream_options, "include_usage")
    return Request(
        model=get_str(body, "model") or "",
        messages=[Message("user", [Text(prompt)])] if prompt else [],
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        temperature=get_number(body, "temperature"),
        top_p=get_number(body, "top_p"),
        stop=get_stop(body, "stop"),
        stream=stream,
        stream_usage=bool(stream and include_usage),
    )


def encode_request(request: Request) -> dict[str, Any]:
    _client_only("request encoder")


# -- responses -------------------------------------------------------------------------------------


def completion_id(upstream_id: str) -> str:
    if upstream_id.startswith("cmpl-"):
        return upstream_id
    return "cmpl-" + (upstream_id or uuid.uuid4().hex[:24])


def _finish_reason(stop_reason: StopReason) -> str:
    if stop_reason is StopReason.MAX_TOKENS:
        return "length"
    if stop_reason is StopReason.REFUSAL:
        return "content_filter"
    return "stop"  # also tool use (calls are dropped), stop sequences and errors


def _encode_usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def decode_response(body: dict[str, Any]) -> Response:
    _client_only("response decoder")


def encode_response(response: Response) -> dict[str, Any]:
    text = "".join(p.text for p in response.parts if isinstance(p, Text))
    return {
        "id": completion_id(response.id),
        "object": "text_completion",
        "created": response.created or int(time.time()),
        "model": response.model,
        "choices": [
            {"text": text, "index": 0, "logprobs": None, "finish_reason": _finish_reason(response.stop_reason)}
        ],
        "usage": _encode_usage(response.usage),
    }


# -- streams ---------------------------------------------------------------------------------------


def stream_decoder() -> NoReturn:
    _client_only("stream decoder")


class CompletionsStreamEncoder:
    """Canonical events in, `text_completion` chunks out, ending with `data: [DONE]`.

    Every chunk shares the id, created and model of the Start; their JSON prefix is built once.
    Only text deltas make chunks: thinking and tool calls have no place in a text completion.
    """

    def __init__(self, request: Request, sse: bool = True) -> None:
        # Completions streams are always SSE; `sse` only matters to Gemini.
        self._usage_wanted = request.stream_usage
        self._prefix = b""
        self._suffix = b',"usage":null}\n\n' if request.stream_usage else b"}\n\n"
        self._started = False
        self._done = False
        self._kind: str | None = None  # kind of the open block

    def encode(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, StreamError):
            return self._error(event.message, event.status)
        if not self._started:
            self._start(event if isinstance(event, Start) else Start(id="", model=""))
        if isinstance(event, BlockStart):
            self._kind = event.kind
        elif isinstance(event, BlockStop):
            self._kind = None
        elif isinstance(event, Delta):
            if self._kind == "text" and event.text:
                return self._chunk(event.text)
        elif isinstance(event, Finish):
            return self._finish(event)
        return b""

    def close(self) -> bytes:
        if self._done:
            return b""
        return self._error("upstream stream ended early", 502)

    def _start(self, start: Start) -> None:
        self._started = True
        created = start.created or int(time.time())
        self._prefix = (
            f'data: {{"id":{_dumps(completion_id(start.id))},"object":"text_completion",'
            f'"created":{created},"model":{_dumps(start.model)},"choices":'
        ).encode()

    def _chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return self._prefix + b"[" + _dumps(choice).encode() + b"]" + self._suffix

    def _finish(self, finish: Finish) -> bytes:
        self._done = True
        out = self._chunk("", _finish_reason(finish.stop_reason))
        if self._usage_wanted:
            usage = _dumps(_encode_usage(finish.usage or Usage())).encode()
            out += self._prefix + b'[],"usage":' + usage + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def _error(self, message: str, status: int) -> bytes:
        self._done = True
        return b"data: " + error_body(Format.OPENAI_COMPLETIONS, status, message) + b"\n\ndata: [DONE]\n\n"


CODEC = Codec(
    format=Format.OPENAI_COMPLETIONS,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=stream_decoder,
    stream_encoder=CompletionsStreamEncoder,
    error_message=error_message,
)
