"""The hub every format translates through: one model of a conversation and of a stream.

Each wire format has a decoder into these types and an encoder out of them, for requests,
whole responses and stream events. Nothing here knows any wire format; nothing here does I/O.

Conventions every codec keeps:
- `Message.role` is "user" or "assistant" only; system and developer prompts live in
  `Request.system`, tool results are `ToolResult` parts of a user message.
- Tool-call arguments are a JSON object (`dict`); a string that is not valid JSON is kept as
  `{"_raw": s}` so that nothing is lost.
- A `Thinking.signature` is opaque and bound to the format that produced it (`origin`); encoders
  drop signatures whose origin is another format, never fabricate one.
- A response that stops with `StopReason.MAX_TOKENS` was cut off in its last part: that part is
  incomplete, and a cut tool call's arguments are exactly what arrived (`{"_raw": s}`, "" when
  nothing did, unless `s` happens to be a whole JSON object). Encoders say so in their format's
  own terms and never complete the call (see `cut_off`).
- A custom (freeform) tool takes one string: canonically a function whose arguments are
  `{"input": <string>}` (`custom_tools`), so that formats without custom tools carry it as one.
- `cache_control` is Anthropic's prompt-caching breakpoint (`{"type": "ephemeral", "ttl"?}`),
  kept on the parts, system texts and tools a client marked.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from translators.fields import FieldError, get_str, wrong_type


# -- content -------------------------------------------------------------------------------


@dataclass(slots=True)
class Text:
    text: str
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class Image:
    media_type: str  # "image/png"; for URLs whatever is known, else ""
    data: str | None = None  # base64, without a data: prefix
    url: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class Thinking:
    text: str = ""
    signature: str | None = None
    origin: str | None = None  # Format.value of the provider whose signature this is
    redacted: bool = False  # Anthropic redacted_thinking: `signature` then holds its data


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    # Gemini 3 thought signatures ride on function calls and must come back with them.
    signature: str | None = None
    origin: str | None = None
    custom: bool = False  # a call of a custom (freeform) tool: arguments {"input": str}


@dataclass(slots=True)
class ToolResult:
    call_id: str
    content: list[Text | Image] = field(default_factory=list)
    is_error: bool = False
    name: str | None = None  # the called tool's name; Gemini links results by name
    cache_control: dict[str, Any] | None = None


Part = Text | Image | Thinking | ToolCall | ToolResult


@dataclass(slots=True)
class Message:
    role: Literal["user", "assistant"]
    parts: list[Part] = field(default_factory=list)


# -- requests ------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON Schema
    # A custom (freeform) tool: `parameters` is then `custom_tools.PARAMETERS` and `format` the
    # Responses API's input format ({"type": "text"} or {"type": "grammar", syntax, definition}).
    custom: bool = False
    format: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "any", "none", "tool"] = "auto"
    name: str | None = None  # for mode "tool"
    parallel: bool | None = None  # None: the provider's default


@dataclass(slots=True)
class Reasoning:
    """What the client asked for; `translators.reasoning` maps between the two forms."""

    effort: str | None = None  # none | minimal | low | medium | high | xhigh | max | auto
    budget: int | None = None  # tokens; -1 means dynamic / auto, 0 means off


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message] = field(default_factory=list)
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    reasoning: Reasoning | None = None
    response_format: ResponseFormat | None = None
    n: int | None = None
    # Client asked for usage in the stream (OpenAI chat `stream_options.include_usage`).
    stream_usage: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


# -- responses -----------------------------------------------------------------------------


class StopReason(enum.Enum):
    END = "end"
    MAX_TOKENS = "max_tokens"
    TOOL_USE = "tool_use"
    STOP_SEQUENCE = "stop_sequence"
    REFUSAL = "refusal"
    ERROR = "error"


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # the whole prompt, cached parts included
    output_tokens: int = 0  # reasoning included
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Response:
    id: str
    model: str
    parts: list[Text | Thinking | ToolCall] = field(default_factory=list)
    stop_reason: StopReason = StopReason.END
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int = 0  # unix seconds; 0: unknown


# -- stream events -------------------------------------------------------------------------
# A decoded stream is: Start, then for each block BlockStart, Delta*, BlockStop (blocks do not
# interleave: a block is stopped before the next starts), then Finish, exactly once, last.
# A Finish with MAX_TOKENS says the last block stopped was cut off: encoders that must tell a
# finished item from a cut one hold its end until the next event.


@dataclass(slots=True)
class Start:
    id: str
    model: str
    usage: Usage | None = None  # input usage, when the upstream reports it up front
    created: int = 0
    # The Format.value the events were decoded from: stream encoders pass signatures (in
    # Deltas) on only when it is their own format.
    origin: str | None = None


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: Literal["text", "thinking", "tool_call"]
    id: str | None = None  # tool_call
    name: str | None = None  # tool_call


@dataclass(slots=True)
class Delta:
    index: int
    text: str = ""  # text or thinking text
    arguments: str = ""  # a fragment of a tool call's JSON arguments
    signature: str | None = None  # thinking / tool-call signature, usually once at the end


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Finish:
    stop_reason: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamError:
    """The upstream reported an error mid-stream (or was cut off)."""

    message: str
    status: int = 500


Event = Start | BlockStart | Delta | BlockStop | Finish | StreamError


def cache_control(owner: dict[str, Any]) -> dict[str, Any] | None:
    """The `cache_control` mark a client set on `owner` (a part, message or tool) in Anthropic's
    form, or None if there is none or it is not Anthropic's kind (its type not "ephemeral").

    A mark of the wrong shape is a `FieldError` naming it: it is the client's JSON."""
    mark = owner.get("cache_control")
    if mark is None:
        return None
    if not isinstance(mark, dict):
        raise wrong_type(mark, "an object", "cache_control")
    try:
        kind, ttl = get_str(mark, "type"), get_str(mark, "ttl")
    except FieldError as e:
        raise e.within("cache_control")
    if kind != "ephemeral":
        return None
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


def cut_arguments(raw: str) -> dict[str, Any]:
    """A cut-off call's arguments: exactly what arrived, unless that is a whole JSON object."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


def cut_off(response: Response) -> Text | Thinking | ToolCall | None:
    """The part the token limit cut, if the response was cut off (its last part)."""
    if response.stop_reason is StopReason.MAX_TOKENS and response.parts:
        return response.parts[-1]
    return None
