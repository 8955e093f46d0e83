"""Anthropic Messages (`POST /v1/messages`) to and from the canonical model.

Decoding is faithful: whatever the canonical model can hold is kept, the rest (cache_control,
citations, server tools and their result blocks, file-id sources) is dropped.

Encoding builds a body the Messages API accepts, which takes more than renaming fields:

- `max_tokens` defaults to `DEFAULT_MAX_TOKENS` (8192): the API requires it, other formats don't.
- Empty text blocks are dropped, messages left empty too, and same-role neighbours merged
  (400 "text content blocks must be non-empty").
- `tool_result` blocks go first in their user message, as the API requires.
- Tool ids outside `^[a-zA-Z0-9_-]+$` are rewritten by `sanitize_tool_id`, results alike
  (400 "tool_use.id: String should match pattern").
- Thinking blocks of another origin, or without a signature, are dropped
  (400 "Invalid `signature` in `thinking` block").
- `n > 1` raises ValueError: one completion per request.
- temperature is clamped to [0, 1] (the API's range); top_p is dropped when temperature is set
  (newer models reject both at once).
- Whitespace-only stop sequences are dropped, and metadata keeps only `user_id` (the API
  rejects the rest).
- A json_schema response format becomes `output_config.format`; json_object has no equivalent.
- `cache_control` marks that another format's client set go on their blocks, system texts and
  tools; past the API's 4, the last 4 in prefix order are kept (`_limit_cache_breakpoints`).
- A custom (freeform) tool is a function of one string, its grammar told in the description.
- A whole answer cut off in a tool call (`max_tokens`) carries its input as far as it parses,
  as the SDKs' partial parsers read a stream's `partial_json`.

Reasoning (`_thinking`):
- budget 0 / effort "none" -> `{"type": "disabled"}`.
- Models that take adaptive thinking (Opus/Sonnet 4.6 and later, Mythos; Opus 4.7+ reject budgets):
  `{"type": "adaptive"}` plus `output_config.effort` (minimal -> low, auto -> omitted).
- Other models: `{"type": "enabled", "budget_tokens": b}` with b >= 1024 (auto -> the medium budget).
  Without a client `max_tokens`, max_tokens = min(b + 8192, 64000) so the answer keeps room; the
  budget is then clamped below max_tokens, and when a client's own max_tokens leaves no room for
  the 1024 minimum, thinking is not requested at all (the client's output cap wins).
- With thinking on: temperature dropped unless 1, top_k dropped, top_p dropped below 0.95, a forced
  tool_choice (any / tool) downgraded to auto.
- Thinking is not requested when the turn continues a tool loop whose assistant message does not
  start with a (valid, Anthropic-signed) thinking block: the API would reject the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Image,
    Message,
    Part,
    Reasoning,
    Request,
    Response,
    ResponseFormat,
    Start,
    StopReason,
    StreamError,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
    cut_off,
)
from translators import custom_tools
from translators.codec import Codec
from translators.fields import (
    FieldError,
    at,
    dicts,
    get_bool,
    get_dict,
    get_dict_or_none,
    get_int,
    get_list,
    get_number,
    get_stop,
    get_str,
    shown,
    wrong_type,
)
from translators.jsonutil import compact, json_string, partial_object
from translators.formats import Format
from translators.reasoning import budget_of, effort_of, effort_to_budget
from translators.sse import SSEReader, loads, sse_bytes

ORIGIN = Format.ANTHROPIC.value

DEFAULT_MAX_TOKENS = 8192
MIN_THINKING_BUDGET = 1024
# The largest output of the models that still take budgets (Sonnet 4.x, Haiku 4.5); only used
# when we choose max_tokens ourselves.
MAX_CHOSEN_MAX_TOKENS = 64000
# "A maximum of 4 blocks with cache_control may be provided."
MAX_CACHE_BREAKPOINTS = 4

_STOP_REASONS_IN = {
    "end_turn": StopReason.END,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.REFUSAL,
    "pause_turn": StopReason.END,  # no canonical equivalent; the turn did end for now
}

_STOP_REASONS_OUT = {
    StopReason.END: "end_turn",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.TOOL_USE: "tool_use",
    StopReason.REFUSAL: "refusal",
    StopReason.ERROR: "end_turn",  # Anthropic has no error stop reason
}

_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_ERROR_TYPES = {
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_EFFORTS_OUT = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")
_MODEL_VERSION = re.compile(r"(?:opus|sonnet|haiku)-(\d+)(?:[-.](\d{1,2})(?!\d))?")


def sanitize_tool_id(call_id: str) -> str:
    """`call_id` if Anthropic accepts it, else a deterministic valid id unique to it."""
    if _TOOL_ID.fullmatch(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:16]
    cleaned = _NOT_TOOL_ID.sub("_", call_id)[:48].strip("_")
    return f"{cleaned}_{digest}" if cleaned else f"toolu_{digest}"


def _response_tool_id(call_id: str | None, message_id: str, position: int) -> str:
    # Upstreams without call ids (Gemini) still need distinct ids for the client to answer.
    if call_id:
        return sanitize_tool_id(call_id)
    return sanitize_tool_id(f"toolu_{message_id}_{position}")


# -- usage and small shapes ---------------------------------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def decode_usage(usage: dict[str, Any]) -> Usage:
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    return Usage(
        # Anthropic's input_tokens excludes cached tokens; canonical counts the whole prompt.
        input_tokens=_int(usage.get("input_tokens")) + read + write,
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=_int(details.get("thinking_tokens")) if isinstance(details, dict) else 0,
    )


def encode_usage(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value or "{}")
        except ValueError:
            return {"_raw": value}
        return parsed if isinstance(parsed, dict) else {"_raw": value}
    return {} if value is None else {"_raw": json.dumps(value)}


def _signature(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- requests: decode ---------------------------------------------------------------------------


def _decode_media(block: dict[str, Any]) -> Text | Image | None:
    """An image or document block; documents ride as `Image` with their media type."""
    source = get_dict_or_none(block, "source")
    if source is None:
        return None
    try:
        kind = get_str(source, "type")
        document = block.get("type") == "document"
        default = "application/pdf" if document else ""
        if kind == "base64":
            return Image(media_type=get_str(source, "media_type") or default, data=get_str(source, "data") or "")
        if kind == "url":
            return Image(media_type=get_str(source, "media_type") or default, url=get_str(source, "url") or "")
        if kind == "text" and document and (text := get_str(source, "data")):
            return Text(text)
    except FieldError as e:
        raise e.within("source")
    return None  # file ids, content sources: nothing canonical to hold them


def _decode_result_content(block: dict[str, Any]) -> list[Text | Image]:
    content = block.get("content")
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, (list, type(None))):
        raise wrong_type(content, "a string or a list of content blocks", "content")
    parts: list[Text | Image] = []
    for index, inner in dicts(content or [], "content"):
        try:
            kind = get_str(inner, "type")
            if kind == "text":
                if text := get_str(inner, "text"):
                    parts.append(Text(text))
            elif kind in ("image", "document"):
                if (media := _decode_media(inner)) is not None:
                    parts.append(media)
        except FieldError as e:
            raise e.within("content", index)
    return parts


def _decode_block(block: dict[str, Any], names: dict[str, str]) -> Part | None:
    kind = get_str(block, "type")
    if kind == "text":
        return Text(text) if (text := get_str(block, "text")) else None
    if kind in ("image", "document"):
        return _decode_media(block)
    if kind == "thinking":
        return Thinking(text=get_str(block, "thinking") or "", signature=get_str(block, "signature") or None, origin=ORIGIN)
    if kind == "redacted_thinking":
        return Thinking(signature=get_str(block, "data") or None, origin=ORIGIN, redacted=True)
    if kind == "tool_use":
        call_id = get_str(block, "id") or ""
        name = get_str(block, "name") or ""
        names[call_id] = name
        return ToolCall(call_id, name, _arguments(block.get("input")))
    if kind == "tool_result":
        call_id = get_str(block, "tool_use_id") or ""
        return ToolResult(
            call_id=call_id,
            content=_decode_result_content(block),
            is_error=bool(get_bool(block, "is_error")),
            name=names.get(call_id),
        )
    return None  # server tools and their results, search results...: nothing canonical


def _decode_messages(messages: list[Any], system: list[Text]) -> list[Message]:
    """The conversation; `system` gains the text of `system` messages within it (which
    Anthropic takes, as Claude Code sends them), as a Chat client's system messages do."""
    names: dict[str, str] = {}  # tool_use id -> tool name, for results (Gemini links by name)
    out: list[Message] = []
    for index, message in dicts(messages, "messages"):
        try:
            role = get_str(message, "role")
            if role == "system":
                system.extend(_texts(message.get("content"), "content"))
                continue
            if role not in ("user", "assistant"):
                raise FieldError(f"expected role 'user', 'assistant' or 'system', got {shown(role)}", "role")
            content = message.get("content")
            if isinstance(content, str):
                parts: list[Part] = [Text(content)] if content else []
            elif isinstance(content, list):
                parts = []
                for position, block in dicts(content, "content"):
                    try:
                        if (part := _decode_block(block, names)) is not None:
                            parts.append(part)
                    except FieldError as e:
                        raise e.within("content", position)
            else:
                raise wrong_type(content, "a string or a list of content blocks", "content")
        except FieldError as e:
            raise e.within("messages", index)
        out.append(Message(role=role, parts=parts))
    return out


def _texts(value: Any, field: str) -> list[Text]:
    """A system prompt: a string or a list of text blocks."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)] if value else []
    if not isinstance(value, list):
        raise wrong_type(value, "a string or a list of text blocks", field)
    texts = []
    for index, block in dicts(value, field):
        try:
            if get_str(block, "type") == "text" and (text := get_str(block, "text")):
                texts.append(Text(text))
        except FieldError as e:
            raise e.within(field, index)
    return texts


def _decode_tools(tools: list[Any]) -> list[Tool]:
    decoded = []
    for index, tool in dicts(tools, "tools"):
        try:
            # Server tools (web search, code execution...) have a `type` other than "custom" and
            # no canonical equivalent.
            if get_str(tool, "type") in (None, "custom") and "input_schema" in tool:
                decoded.append(
                    Tool(
                        name=get_str(tool, "name") or "",
                        description=get_str(tool, "description") or "",
                        parameters=get_dict(tool, "input_schema"),
                    )
                )
        except FieldError as e:
            raise e.within("tools", index)
    return decoded


def _decode_tool_choice(choice: dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    kind = get_str(choice, "type")
    if kind not in ("auto", "any", "none", "tool"):
        raise FieldError(f"unsupported tool_choice type {shown(kind)}", "type")
    disable = get_bool(choice, "disable_parallel_tool_use")
    return ToolChoice(
        mode=kind,
        name=get_str(choice, "name") if kind == "tool" else None,
        parallel=None if disable is None else not disable,
    )


def _decode_reasoning(thinking: dict[str, Any] | None, output_config: dict[str, Any]) -> Reasoning | None:
    with at("output_config"):
        effort = get_str(output_config, "effort")
    with at("thinking"):
        kind = get_str(thinking, "type") if thinking is not None else None
        if thinking is not None and kind == "enabled":
            return Reasoning(effort=effort, budget=get_int(thinking, "budget_tokens") or 0)
    if kind == "disabled":
        return Reasoning(budget=0)
    if kind == "adaptive":
        return Reasoning(effort=effort or "auto")
    if effort:
        return Reasoning(effort=effort)
    return None


def _decode_response_format(
    body: dict[str, Any], output_config: dict[str, Any]
) -> ResponseFormat | None:
    # GA `output_config.format`, or the structured-outputs beta's top-level `output_format`.
    with at("output_config"):
        fmt = get_dict_or_none(output_config, "format")
    if fmt is None:
        fmt = get_dict_or_none(body, "output_format")
    if fmt is None:
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return ResponseFormat(type="json_schema", schema=fmt["schema"])
    return None


def decode_request(body: dict[str, Any]) -> Request:
    if "messages" not in body:
        raise FieldError("required", "messages")
    output_config = get_dict(body, "output_config")
    tool_choice = get_dict_or_none(body, "tool_choice")
    with at("tool_choice"):
        tool_choice = _decode_tool_choice(tool_choice)
    metadata = get_dict(body, "metadata")
    system = _texts(body.get("system"), "system")
    return Request(
        model=get_str(body, "model") or "",
        messages=_decode_messages(get_list(body, "messages"), system),
        system=system,
        tools=_decode_tools(get_list(body, "tools")),
        tool_choice=tool_choice,
        max_tokens=get_int(body, "max_tokens"),
        temperature=get_number(body, "temperature"),
        top_p=get_number(body, "top_p"),
        top_k=get_int(body, "top_k"),
        stop=get_stop(body, "stop_sequences"),
        stream=bool(get_bool(body, "stream")),
        reasoning=_decode_reasoning(get_dict_or_none(body, "thinking"), output_config),
        response_format=_decode_response_format(body, output_config),
        metadata=dict(metadata),
    )


# -- requests: encode ---------------------------------------------------------------------------


def _encode_media(image: Image) -> dict[str, Any] | None:
    media_type = image.media_type or ""
    if image.data is not None:
        if media_type.startswith("image/"):
            source = {"type": "base64", "media_type": media_type, "data": image.data}
            return {"type": "image", "source": source}
        if media_type == "application/pdf":
            source = {"type": "base64", "media_type": media_type, "data": image.data}
            return {"type": "document", "source": source}
        if media_type.startswith("text/"):
            try:
                text = base64.b64decode(image.data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            source = {"type": "text", "media_type": "text/plain", "data": text}
            return {"type": "document", "source": source}
        return None  # Anthropic takes images, PDFs and plain text only
    if image.url:
        if media_type == "application/pdf" or (not media_type and image.url.lower().endswith(".pdf")):
            return {"type": "document", "source": {"type": "url", "url": image.url}}
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return None


def _encode_result_content(content: list[Text | Image]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, Text):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif (block := _encode_media(part)) is not None:
            blocks.append(block)
    return blocks


def _encode_thinking(part: Thinking) -> dict[str, Any] | None:
    if part.origin != ORIGIN or not part.signature:
        return None
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _cached(block: dict[str, Any] | None, mark: dict[str, Any] | None) -> dict[str, Any] | None:
    if block is not None and mark is not None:
        block["cache_control"] = dict(mark)
    return block


def _encode_part(part: Part, role: str) -> dict[str, Any] | None:
    if isinstance(part, Text):
        return _cached({"type": "text", "text": part.text}, part.cache_control) if part.text else None
    if isinstance(part, Image):
        return _cached(_encode_media(part), part.cache_control)
    if isinstance(part, Thinking):
        return _encode_thinking(part) if role == "assistant" else None
    if isinstance(part, ToolCall):
        call_id = sanitize_tool_id(part.id)
        return {"type": "tool_use", "id": call_id, "name": part.name, "input": part.arguments}
    if isinstance(part, ToolResult):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": sanitize_tool_id(part.call_id)}
        if content := _encode_result_content(part.content):
            block["content"] = content
        if part.is_error:
            block["is_error"] = True
        return _cached(block, part.cache_control)
    return None


def _encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks = [
            block for part in message.parts if (block := _encode_part(part, message.role)) is not None
        ]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for message in out:
        content = message["content"]
        if message["role"] == "user" and any(b["type"] == "tool_result" for b in content):
            results = [b for b in content if b["type"] == "tool_result"]
            message["content"] = results + [b for b in content if b["type"] != "tool_result"]
    return out


def _adaptive_model(model: str) -> bool:
    """Models that take `thinking: {type: "adaptive"}` (4.6 and later; Opus 4.7+ take nothing else)."""
    name = model.lower()
    if "mythos" in name:
        return True
    m = _MODEL_VERSION.search(name)
    if not m:
        return False
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return (major, minor) >= (4, 6)


def _tool_loop_without_thinking(messages: list[dict[str, Any]]) -> bool:
    """True if the last assistant turn is answered by tool results but starts without thinking.

    With thinking on, the API rejects that ("a final `assistant` message must start with a
    thinking block"); it happens when the history came from another provider.
    """
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message["role"] != "assistant":
            continue
        content = message["content"]
        if not any(b["type"] == "tool_use" for b in content) or i + 1 == len(messages):
            return False
        answered = any(b["type"] == "tool_result" for b in messages[i + 1]["content"])
        return answered and content[0]["type"] not in ("thinking", "redacted_thinking")
    return False


def _thinking(
    req: Request, messages: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, str | None, int]:
    """The `thinking` object, the `output_config.effort` and `max_tokens` to send."""
    max_tokens = req.max_tokens
    reasoning = req.reasoning
    budget = budget_of(reasoning) if reasoning is not None else None
    if reasoning is None or budget is None:
        return None, None, max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if budget == 0:
        return {"type": "disabled"}, None, max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if _tool_loop_without_thinking(messages):
        return None, None, max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if _adaptive_model(req.model):
        effort = effort_of(reasoning) or "auto"
        if max_tokens is None:
            room = effort_to_budget("high" if effort == "auto" else effort)
            max_tokens = min(room + DEFAULT_MAX_TOKENS, MAX_CHOSEN_MAX_TOKENS)
        return {"type": "adaptive"}, _EFFORTS_OUT.get(effort), max_tokens
    if budget < 0:
        budget = effort_to_budget("medium")
    budget = max(budget, MIN_THINKING_BUDGET)
    if max_tokens is None:
        max_tokens = min(budget + DEFAULT_MAX_TOKENS, MAX_CHOSEN_MAX_TOKENS)
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        return None, None, max_tokens
    return {"type": "enabled", "budget_tokens": budget}, None, max_tokens


def _encode_tool(tool: Tool) -> dict[str, Any]:
    schema = tool.parameters or {"type": "object", "properties": {}}
    if "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": tool.name}
    if description := custom_tools.function_description(tool) if tool.custom else tool.description:
        out["description"] = description
    out["input_schema"] = schema
    return _cached(out, tool.cache_control)  # type: ignore[return-value]


def _limit_cache_breakpoints(body: dict[str, Any]) -> None:
    """Keep the last `MAX_CACHE_BREAKPOINTS` cache_control marks, in the cache's prefix order
    (tools, system, messages), and drop the earlier ones, which the API would refuse.

    Each breakpoint caches the whole prefix before it, so a later mark's entry holds what an
    earlier one's would, and reads are looked up at each mark (and some 20 blocks before it):
    the last marks are the ones that keep a growing conversation cached, where a client moves
    its sliding marks. Keeping the first ones instead would re-bill all later turns in full.
    """
    marked = [t for t in body.get("tools") or () if "cache_control" in t]
    marked += [b for b in body.get("system") or () if "cache_control" in b]
    for message in body["messages"]:
        marked += [b for b in message["content"] if "cache_control" in b]
    for block in marked[:-MAX_CACHE_BREAKPOINTS]:
        del block["cache_control"]


def _encode_tool_choice(choice: ToolChoice, thinking_on: bool) -> dict[str, Any]:
    mode = choice.mode
    if mode == "tool" and not choice.name:
        mode = "any"
    if thinking_on and mode in ("any", "tool"):
        mode = "auto"  # forced tool use is rejected with thinking on
    out: dict[str, Any] = {"type": mode}
    if mode == "tool":
        out["name"] = choice.name
    if choice.parallel is False and mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


def encode_request(req: Request) -> dict[str, Any]:
    if req.n is not None and req.n > 1:
        raise ValueError("Anthropic Messages returns one choice per request: n > 1 is not supported")
    messages = _encode_messages(req.messages)
    thinking, effort, max_tokens = _thinking(req, messages)
    thinking_on = thinking is not None and thinking["type"] != "disabled"

    body: dict[str, Any] = {"model": req.model, "max_tokens": max_tokens, "messages": messages}
    if system := [_cached({"type": "text", "text": t.text}, t.cache_control) for t in req.system if t.text]:
        body["system"] = system
    if req.tools:
        body["tools"] = [_encode_tool(tool) for tool in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _encode_tool_choice(req.tool_choice, thinking_on)
    if thinking is not None:
        body["thinking"] = thinking

    temperature = req.temperature
    if temperature is not None:
        temperature = min(max(float(temperature), 0.0), 1.0)
    top_p, top_k = req.top_p, req.top_k
    if thinking_on:
        temperature = temperature if temperature == 1.0 else None
        top_k = None
        top_p = top_p if top_p is not None and top_p >= 0.95 else None
    if temperature is not None:
        body["temperature"] = temperature
        top_p = None
    if top_p is not None:
        body["top_p"] = top_p
    if top_k is not None:
        body["top_k"] = top_k

    if stop := [s for s in req.stop if s.strip()]:
        body["stop_sequences"] = stop
    if req.stream:
        body["stream"] = True
    if isinstance(user_id := req.metadata.get("user_id"), str):
        body["metadata"] = {"user_id": user_id}

    output_config: dict[str, Any] = {}
    if effort is not None:
        output_config["effort"] = effort
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": fmt.schema}
    if output_config:
        body["output_config"] = output_config
    _limit_cache_breakpoints(body)
    return body


# -- responses ----------------------------------------------------------------------------------


def decode_response(body: dict[str, Any]) -> Response:
    parts: list[Text | Thinking | ToolCall] = []
    for block in body.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type") or ("text" if isinstance(block.get("text"), str) else None)
        if kind == "text":
            parts.append(Text(block.get("text") or ""))
        elif kind == "thinking":
            signature = _signature(block.get("signature"))
            parts.append(Thinking(text=block.get("thinking") or "", signature=signature, origin=ORIGIN))
        elif kind == "redacted_thinking":
            parts.append(Thinking(signature=_signature(block.get("data")), origin=ORIGIN, redacted=True))
        elif kind == "tool_use":
            call_id = str(block.get("id") or "")
            parts.append(ToolCall(call_id, block.get("name") or "", _arguments(block.get("input"))))
    stop_reason = _STOP_REASONS_IN.get(body.get("stop_reason") or "end_turn", StopReason.END)
    if stop_reason is StopReason.MAX_TOKENS and parts and isinstance(cut := parts[-1], ToolCall):
        if not cut.arguments:
            cut.arguments = {"_raw": ""}  # cut before any input: no arguments, not an empty object
    usage = body.get("usage")
    return Response(
        id=body.get("id") or "",
        model=body.get("model") or "",
        parts=parts,
        stop_reason=stop_reason,
        stop_sequence=body.get("stop_sequence") if stop_reason is StopReason.STOP_SEQUENCE else None,
        usage=decode_usage(usage) if isinstance(usage, dict) else Usage(),
    )


def _stop_reason_out(reason: StopReason, saw_tool_call: bool) -> str:
    # A tool call wins over a plain stop: clients run tools only on "tool_use".
    if saw_tool_call and reason in (StopReason.END, StopReason.ERROR):
        return "tool_use"
    return _STOP_REASONS_OUT[reason]


def encode_response(resp: Response) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    calls = 0
    cut = cut_off(resp)
    for part in resp.parts:
        if isinstance(part, Text):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, Thinking):
            if (block := _encode_thinking(part)) is not None:
                content.append(block)
            elif not part.redacted and part.text:
                # Another provider's reasoning: shown, but with no signature to replay.
                content.append({"type": "thinking", "thinking": part.text, "signature": ""})
        elif isinstance(part, ToolCall):
            call_id = _response_tool_id(part.id, resp.id, calls)
            calls += 1
            arguments = part.arguments
            raw = arguments.get("_raw")
            if part is cut and len(arguments) == 1 and isinstance(raw, str):
                # Half a tool_use, as max_tokens leaves it: its input as far as it can be read.
                arguments = partial_object(raw)
            content.append({"type": "tool_use", "id": call_id, "name": part.name, "input": arguments})
    stop_reason = _stop_reason_out(resp.stop_reason, calls > 0)
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": resp.stop_sequence if stop_reason == "stop_sequence" else None,
        "usage": encode_usage(resp.usage),
    }


def error_message(parsed: Any) -> str | None:
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return None


# -- streams: decode ----------------------------------------------------------------------------


class StreamDecoder:
    """Anthropic SSE bytes -> canonical events."""

    __slots__ = (
        "_reader",
        "_started",
        "_done",
        "_next",
        "_open",
        "_upstream_open",
        "_usage",
        "_stop_reason",
        "_stop_sequence",
    )

    def __init__(self) -> None:
        self._reader = SSEReader()
        self._started = False
        self._done = False
        self._next = 0  # next canonical block index
        self._open: int | None = None  # canonical index of the open block
        self._upstream_open: int | None = None  # its upstream index
        self._usage: dict[str, Any] = {}  # raw upstream usage, message_delta values overriding
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for name, data in self._reader.frames(chunk):
            if not self._done:
                self._event(name, data, events)
        return events

    def close(self) -> list[Event]:
        events: list[Event] = []
        for name, data in self._reader.close_frames():
            if not self._done:
                self._event(name, data, events)
        if not self._done:
            self._done = True
            self._close_block(events)
            events.append(StreamError("upstream stream ended early", 502))
        return events

    def _close_block(self, events: list[Event]) -> None:
        if self._open is not None:
            events.append(BlockStop(self._open))
            self._open = self._upstream_open = None

    def _ensure_started(self, events: list[Event]) -> None:
        if not self._started:
            self._started = True
            events.append(Start(id="", model=""))

    def _event(self, name: bytes, data: bytes, events: list[Event]) -> None:
        if not data or data == b"[DONE]":
            return
        try:
            payload = loads(data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type") or name.decode("utf-8", "replace")
        if kind == "content_block_delta":
            self._delta(payload, events)
        elif kind == "content_block_start":
            self._block_start(payload, events)
        elif kind == "content_block_stop":
            index = payload.get("index")
            if self._open is not None and (index is None or index == self._upstream_open):
                self._close_block(events)
        elif kind == "message_start":
            self._message_start(payload, events)
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            self._stop_sequence = delta.get("stop_sequence") or self._stop_sequence
            for key, value in (payload.get("usage") or {}).items():
                if value is not None:
                    self._usage[key] = value
        elif kind == "message_stop":
            self._ensure_started(events)
            self._close_block(events)
            self._done = True
            reason = _STOP_REASONS_IN.get(self._stop_reason or "end_turn", StopReason.END)
            sequence = self._stop_sequence if reason is StopReason.STOP_SEQUENCE else None
            usage = decode_usage(self._usage) if self._usage else None
            events.append(Finish(stop_reason=reason, usage=usage, stop_sequence=sequence))
        elif kind == "error":
            error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
            self._done = True
            self._close_block(events)
            message = error.get("message") or "upstream stream error"
            events.append(StreamError(str(message), _ERROR_STATUS.get(error.get("type"), 500)))
        # ping and unknown events carry nothing canonical

    def _message_start(self, payload: dict[str, Any], events: list[Event]) -> None:
        if self._started:
            return
        self._started = True
        message = payload.get("message") or {}
        usage = message.get("usage")
        start_usage = None
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            start_usage = decode_usage(usage)
            start_usage.output_tokens = 0  # the start's output count is a placeholder
        events.append(
            Start(id=message.get("id") or "", model=message.get("model") or "", usage=start_usage)
        )

    def _block_start(self, payload: dict[str, Any], events: list[Event]) -> None:
        self._ensure_started(events)
        self._close_block(events)
        block = payload.get("content_block") or {}
        kind = block.get("type")
        index = self._next
        if kind == "text":
            events.append(BlockStart(index, "text"))
            if block.get("text"):
                events.append(Delta(index, text=block["text"]))
        elif kind == "thinking":
            events.append(BlockStart(index, "thinking"))
            if block.get("thinking"):
                events.append(Delta(index, text=block["thinking"]))
            if signature := _signature(block.get("signature")):
                events.append(Delta(index, signature=signature))
        elif kind == "tool_use":
            call_id, name = block.get("id") or "", block.get("name") or ""
            events.append(BlockStart(index, "tool_call", id=call_id, name=name))
            if block.get("input"):
                arguments = compact(block["input"])
                events.append(Delta(index, arguments=arguments))
        else:
            # redacted_thinking (stream events cannot mark a block redacted), server tool blocks
            return
        self._next += 1
        self._open, self._upstream_open = index, payload.get("index")

    def _delta(self, payload: dict[str, Any], events: list[Event]) -> None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        index = payload.get("index")
        if self._open is None or (index is not None and index != self._upstream_open):
            # A delta for a block that never started: its content still counts, in a block of
            # the kind the delta implies.
            block = _IMPLIED_BLOCKS.get(kind)
            if block is None:
                return
            self._block_start({"index": index, "content_block": block}, events)
        if kind == "text_delta":
            if text := delta.get("text"):
                events.append(Delta(self._open, text))  # positional: a third cheaper, per event
        elif kind == "thinking_delta":
            if text := delta.get("thinking"):
                events.append(Delta(self._open, text))
        elif kind == "input_json_delta":
            if partial := delta.get("partial_json"):
                events.append(Delta(self._open, arguments=partial))
        elif kind == "signature_delta":
            if signature := _signature(delta.get("signature")):
                events.append(Delta(self._open, signature=signature))


# -- streams: encode ----------------------------------------------------------------------------


_IMPLIED_BLOCKS: dict[Any, dict[str, Any]] = {
    "text_delta": {"type": "text", "text": ""},
    "thinking_delta": {"type": "thinking", "thinking": ""},
    "signature_delta": {"type": "thinking", "thinking": ""},
    "input_json_delta": {"type": "tool_use", "id": "", "name": "", "input": {}},
}

_EMPTY_TEXT = {"type": "text", "text": ""}
_EMPTY_THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def _frame(data: dict[str, Any]) -> bytes:
    return sse_bytes(data, data["type"])


# The content_block_delta frames of text, thinking and tool input, most of a stream: a template
# per block around the string, written by the C string encoder.
_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
)
_DELTA_TAIL = b"}}\n\n"
_DELTA_FIELDS = {
    "text": (b"text_delta", b"text"),
    "thinking": (b"thinking_delta", b"thinking"),
    "tool_call": (b"input_json_delta", b"partial_json"),
}


class StreamEncoder:
    """Canonical events -> the Anthropic SSE stream a Messages client expects."""

    __slots__ = (
        "_model",
        "_id",
        "_started",
        "_done",
        "_next",
        "_open",
        "_open_kind",
        "_own",
        "_delta_head",
        "_signature",
        "_calls",
        "_keep_signatures",
    )

    def __init__(self, request: Request, sse: bool = True) -> None:
        # Anthropic streams are always SSE; `sse` only matters to Gemini.
        self._model = request.model
        self._id = ""
        self._started = False
        self._done = False
        self._next = 0  # next client-side content index
        self._open: int | None = None  # canonical index of the open block
        self._open_kind = ""
        self._own: int | None = None  # its client index; None for a text block not yet begun
        self._delta_head = b""  # its content_block_delta template, up to the value
        self._signature: str | None = None
        self._calls = 0
        # A foreign signature would come back in the client's next request and fail there.
        self._keep_signatures = True

    def encode(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, Delta):
            return self._delta(event)
        if isinstance(event, BlockStart):
            return self._start() + self._stop_block() + self._block_start(event)
        if isinstance(event, BlockStop):
            return self._stop_block() if event.index == self._open else b""
        if isinstance(event, Start):
            return self._start(event)
        if isinstance(event, Finish):
            return self._start() + self._stop_block() + self._finish(event)
        if isinstance(event, StreamError):
            return self._error(event.message, event.status)
        return b""

    def close(self) -> bytes:
        if self._done:
            return b""
        # Ending without Finish would look like a silent truncation: report it as an error.
        return self._error("upstream stream ended early", 502)

    def _start(self, event: Start | None = None) -> bytes:
        if self._started:
            return b""
        self._started = True
        if event is not None:
            self._id = event.id
            self._keep_signatures = event.origin in (None, ORIGIN)
        usage = encode_usage(event.usage if event is not None and event.usage is not None else Usage())
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": (event.model if event is not None else "") or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return _frame({"type": "message_start", "message": message})

    def _open_block(self, content_block: dict[str, Any]) -> bytes:
        self._own = self._next
        self._next += 1
        self._delta_head = _DELTA_HEAD % (self._own, *_DELTA_FIELDS[self._open_kind])
        start = {"type": "content_block_start", "index": self._own, "content_block": content_block}
        return _frame(start)

    def _block_start(self, event: BlockStart) -> bytes:
        self._open, self._open_kind, self._signature = event.index, event.kind, None
        self._own = None
        if event.kind != "tool_call":
            # Begun at their first content, so that empty blocks never reach the client.
            return b""
        call_id = _response_tool_id(event.id, self._id, self._calls)
        self._calls += 1
        block = {"type": "tool_use", "id": call_id, "name": event.name or "", "input": {}}
        return self._open_block(block)

    def _delta(self, event: Delta) -> bytes:
        if event.index != self._open:
            return b""
        kind = self._open_kind
        if kind == "text":
            value = event.text
            if not value:
                return b""
            out = self._open_block(_EMPTY_TEXT) if self._own is None else b""
        elif kind == "thinking":
            if event.signature and self._keep_signatures:
                self._signature = event.signature  # sent last, as Anthropic does
            value = event.text
            if not value:
                return b""
            out = self._open_block(_EMPTY_THINKING) if self._own is None else b""
        else:
            value = event.arguments
            if not value:
                return b""  # tool-call signatures have no place in tool_use
            out = b""
        return out + self._delta_head + json_string(value) + _DELTA_TAIL

    def _stop_block(self) -> bytes:
        if self._open is None:
            return b""
        own, signature = self._own, self._signature
        out = b""
        if own is None and signature:
            out = self._open_block(_EMPTY_THINKING)  # thinking with a signature only
            own = self._own
        self._open, self._own, self._signature = None, None, None
        if own is None:
            return b""
        if signature:
            delta = {"type": "signature_delta", "signature": signature}
            out += _frame({"type": "content_block_delta", "index": own, "delta": delta})
        return out + _frame({"type": "content_block_stop", "index": own})

    def _finish(self, event: Finish) -> bytes:
        self._done = True
        stop_reason = _stop_reason_out(event.stop_reason, self._calls > 0)
        delta = {
            "stop_reason": stop_reason,
            "stop_sequence": event.stop_sequence if stop_reason == "stop_sequence" else None,
        }
        usage = encode_usage(event.usage) if event.usage is not None else {"output_tokens": 0}
        message_delta = _frame({"type": "message_delta", "delta": delta, "usage": usage})
        return message_delta + _frame({"type": "message_stop"})

    def _error(self, message: str, status: int) -> bytes:
        self._done = True
        error = {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}
        return _frame({"type": "error", "error": error})


def stream_decoder() -> StreamDecoder:
    return StreamDecoder()


def stream_encoder(request: Request, sse: bool = True) -> StreamEncoder:
    return StreamEncoder(request, sse)


CODEC = Codec(
    format=Format.ANTHROPIC,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=stream_decoder,
    stream_encoder=stream_encoder,
    error_message=error_message,
)
