"""OpenAI Responses API (`POST /v1/responses`, and the ChatGPT Codex backend) <-> canonical.

Requests
- `instructions` and every `system` / `developer` message item become `Request.system`, in order.
- `input` items map onto canonical messages; consecutive items of one role share a message, so
  a run of `function_call_output` items (plus any user text after it) is one user message, and a
  `reasoning` + `message` + `function_call` run is one assistant message.
- `function` and `custom` (freeform, e.g. Codex's `apply_patch`) tools are carried; custom
  tools, their `custom_tool_call` items and outputs as `translators.custom_tools` says. Built-in
  tools (`web_search`, `file_search`, `local_shell`, `mcp`, ...) are dropped on decode, together
  with history items that belong to them and tool choices that name them: no other format can
  run them, and a proxy cannot execute them itself.
- `cache_control` on input content parts and tools (the LiteLLM convention) is kept for
  Anthropic upstreams.
- Encoding writes a body that both api.openai.com and the Codex backend accept: `instructions`
  (the system text joined by blank lines, "" when there is none), `store: false`, and
  `include: ["reasoning.encrypted_content"]` when reasoning is requested or replayed, because with
  `store: false` the encrypted reasoning is the only way to carry it across turns. `codex_body`
  adds what only the Codex backend needs. Function tools are sent with `strict: false`: the
  Responses API defaults to strict schemas, which tools written for other formats rarely satisfy.

Reasoning
- A `reasoning` item is one `Thinking`: its summary texts joined by blank lines (or its
  `reasoning_text` content when there is no summary), `signature` = `encrypted_content`.
- Reasoning items are replayed without their `rs_` id (the canonical model has none, and with
  `store: false` an id makes the server look the item up and fail); Codex CLI does the same.

Streams
- The decoder keys on `data.type` (the `event:` line is optional). A message item becomes one
  text block, a reasoning item one thinking block (its `encrypted_content` arrives as a signature
  Delta just before BlockStop), a function_call item one tool_call block.
- The encoder writes what api.openai.com writes, `event:` lines and `sequence_number`s included,
  and keeps the finished items so that `response.completed` can carry the whole output.
  The encoder forwards signatures only when `Start.origin` (or its `origin` argument) says the
  events come from a Responses upstream. An item's `output_item.done` waits for the next event:
  a Finish with MAX_TOKENS makes it `incomplete`, with the arguments that arrived.
- The decoder is lenient: text and reasoning deltas that name no announced item belong to the
  open item of their kind (or a new one), and a stream that only sends its terminal event has
  that event's output as its answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    cache_control,
    cut_arguments,
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
    get_str,
    shown,
    wrong_type,
)
from translators.jsonutil import compact, json_string
from translators.formats import Format
from translators.reasoning import effort_of
from translators.sse import SSEReader, loads, sse_bytes

ORIGIN = Format.OPENAI_RESPONSES.value
ENCRYPTED_REASONING = "reasoning.encrypted_content"

_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$", re.S)
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
# Blank line between reasoning summary parts, both in whole responses and in streams.
_SUMMARY_SEPARATOR = "\n\n"
# `response.failed` / `error` codes that are not the upstream's fault.
_ERROR_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "usage_limit_reached": 429,
    "invalid_prompt": 400,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
}


# -- shared helpers ------------------------------------------------------------------------


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


def _arguments_json(arguments: dict[str, Any]) -> str:
    raw = arguments.get("_raw")
    if len(arguments) == 1 and isinstance(raw, str):
        return raw
    return compact(arguments)


def _image_from_url(url: str) -> Image:
    if m := _DATA_URL.match(url):
        return Image(media_type=m.group(1), data=m.group(2))
    return Image(media_type="", url=url)


def _image_url(image: Image) -> str:
    if image.data is not None:
        return f"data:{image.media_type or 'application/octet-stream'};base64,{image.data}"
    return image.url or ""


def _thinking_text(item: dict[str, Any]) -> str:
    summary = [s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict)]
    if any(summary):
        return _SUMMARY_SEPARATOR.join(summary)
    return "".join(c.get("text") or "" for c in item.get("content") or () if isinstance(c, dict))


def _thinking(item: dict[str, Any]) -> Thinking:
    signature = item.get("encrypted_content") or None
    return Thinking(text=_thinking_text(item), signature=signature, origin=ORIGIN if signature else None)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    inp = raw.get("input_tokens_details") or {}
    out = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("input_tokens") or 0,
        output_tokens=raw.get("output_tokens") or 0,
        cached_tokens=inp.get("cached_tokens") or 0,
        cache_write_tokens=inp.get("cache_write_tokens") or 0,
        reasoning_tokens=out.get("reasoning_tokens") or 0,
    )


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _stop_reason(status: Any, incomplete: Any, tool_called: bool, refused: bool) -> StopReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        if reason == "content_filter":
            return StopReason.REFUSAL
        # max_output_tokens, and the rarer max_messages / steered: the answer was cut short.
        return StopReason.MAX_TOKENS
    if status in ("failed", "cancelled"):
        return StopReason.ERROR
    # A call that was cut off by the token limit is reported as MAX_TOKENS above, not as a call.
    if tool_called:
        return StopReason.TOOL_USE
    if refused:
        return StopReason.REFUSAL
    return StopReason.END


def _error_status(code: Any) -> int:
    return _ERROR_STATUS.get(code, 500) if isinstance(code, str) else 500


# -- requests ------------------------------------------------------------------------------


def decode_request(body: dict[str, Any]) -> Request:
    request = Request(model=get_str(body, "model") or "", stream=bool(get_bool(body, "stream")))
    if instructions := get_str(body, "instructions"):
        request.system.append(Text(instructions))

    raw_input = body.get("input")
    if isinstance(raw_input, str):
        if raw_input:
            request.messages.append(Message("user", [Text(raw_input)]))
    elif isinstance(raw_input, list):
        _decode_items(raw_input, request)
    elif raw_input is not None:
        raise wrong_type(raw_input, "a string or a list of input items", "input")

    for index, tool in dicts(get_list(body, "tools"), "tools"):
        try:
            if (kind := get_str(tool, "type")) in ("function", "custom"):
                request.tools.append(_decode_tool(tool, kind))
        except FieldError as e:
            raise e.within("tools", index)
    parallel = get_bool(body, "parallel_tool_calls")
    with at("tool_choice"):
        request.tool_choice = _decode_tool_choice(body.get("tool_choice"), parallel)

    reasoning = get_dict(body, "reasoning")
    with at("reasoning"):
        if effort := get_str(reasoning, "effort"):
            request.reasoning = Reasoning(effort=effort)
    request.max_tokens = get_int(body, "max_output_tokens")
    request.temperature = get_number(body, "temperature")
    request.top_p = get_number(body, "top_p")
    text = get_dict(body, "text")
    with at("text"):
        fmt = get_dict_or_none(text, "format")
    with at("text", "format"):
        kind = get_str(fmt, "type") if fmt is not None else None
        if fmt is not None and kind == "json_schema":
            request.response_format = ResponseFormat(
                type="json_schema",
                schema=get_dict_or_none(fmt, "schema"),
                name=get_str(fmt, "name"),
                strict=get_bool(fmt, "strict"),
            )
        elif kind == "json_object":
            request.response_format = ResponseFormat(type="json_object")
    request.metadata = dict(get_dict(body, "metadata"))
    return request


def _decode_tool(tool: dict[str, Any], kind: str) -> Tool:
    name, description = get_str(tool, "name") or "", get_str(tool, "description") or ""
    if kind == "custom":
        decoded = custom_tools.tool(name, description, custom_tools.decode_format(tool))
    else:
        decoded = Tool(name=name, description=description, parameters=get_dict(tool, "parameters"))
    decoded.cache_control = cache_control(tool)
    return decoded


def _decode_items(items: list[Any], request: Request) -> None:
    messages = request.messages
    call_names: dict[str, str] = {}

    def add(role: str, part: Part) -> None:
        if messages and messages[-1].role == role:
            messages[-1].parts.append(part)
        else:
            messages.append(Message(role, [part]))  # type: ignore[arg-type]

    for index, item in dicts(items, "input"):
        try:
            kind = get_str(item, "type") or "message"
            if kind == "message":
                role = get_str(item, "role")
                if role in ("system", "developer"):
                    if text := _request_text(item):
                        request.system.append(Text(text, _last_mark(item)))
                elif role in ("user", "assistant"):
                    for part in _decode_content(item.get("content")):
                        add(role, part)
                else:
                    raise FieldError(f"unsupported role {shown(role)}", "role")
            elif kind == "function_call":
                call_id = get_str(item, "call_id") or get_str(item, "id") or ""
                name = get_str(item, "name") or ""
                call_names[call_id] = name
                arguments = item.get("arguments")
                if not isinstance(arguments, (str, dict, type(None))):
                    raise wrong_type(arguments, "a string of JSON", "arguments")
                add("assistant", ToolCall(id=call_id, name=name, arguments=_arguments(arguments)))
            elif kind == "custom_tool_call":
                call_id = get_str(item, "call_id") or get_str(item, "id") or ""
                name = get_str(item, "name") or ""
                call_names[call_id] = name
                add("assistant", custom_tools.call(call_id, name, get_str(item, "input") or ""))
            elif kind in ("function_call_output", "custom_tool_call_output"):
                call_id = get_str(item, "call_id") or ""
                add(
                    "user",
                    ToolResult(
                        call_id=call_id,
                        content=_decode_output(item.get("output")),
                        name=call_names.get(call_id),
                    ),
                )
            elif kind == "reasoning":
                thinking = _decode_reasoning_item(item)
                if thinking.text or thinking.signature:
                    add("assistant", thinking)
            # Anything else (item_reference, built-in tool calls and their outputs) has no
            # canonical form: a reference needs the server's store, built-in calls need the tool.
        except FieldError as e:
            raise e.within("input", index)


def _text_of_parts(content: Any, key: str) -> str:
    """The text of a string or of a list of text parts (any of the *_text types)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise wrong_type(content, "a string or a list of content parts", key)
    texts = []
    for index, part in dicts(content, key):
        try:
            texts.append(get_str(part, "text") or "")
        except FieldError as e:
            raise e.within(key, index)
    return "".join(texts)


def _request_text(item: dict[str, Any]) -> str:
    return _text_of_parts(item.get("content"), "content")


def _decode_reasoning_item(item: dict[str, Any]) -> Thinking:
    summary = []
    for index, part in dicts(get_list(item, "summary"), "summary"):
        try:
            summary.append(get_str(part, "text") or "")
        except FieldError as e:
            raise e.within("summary", index)
    text = _SUMMARY_SEPARATOR.join(summary) if any(summary) else _request_text(item)
    signature = get_str(item, "encrypted_content") or None
    return Thinking(text=text, signature=signature, origin=ORIGIN if signature else None)


def _decode_content(content: Any, key: str = "content") -> list[Text | Image]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise wrong_type(content, "a string or a list of content parts", key)
    parts: list[Text | Image] = []
    for index, part in dicts(content, key):
        try:
            kind = get_str(part, "type")
            if kind in ("input_text", "output_text", "text"):
                if text := get_str(part, "text"):
                    parts.append(Text(text, cache_control(part)))
            elif kind == "refusal":
                if text := get_str(part, "refusal"):
                    parts.append(Text(text))
            elif kind == "input_image":
                # A `file_id` image lives in the client's OpenAI file store: nothing to carry over.
                if url := get_str(part, "image_url"):
                    parts.append(_image_from_url(url))
                    parts[-1].cache_control = cache_control(part)
        except FieldError as e:
            raise e.within(key, index)
    return parts


def _last_mark(item: dict[str, Any]) -> dict[str, Any] | None:
    """The cache_control on the last of a system item's parts: its text is kept joined."""
    content = item.get("content")
    if isinstance(content, list) and content:  # of objects only: _request_text has read it
        try:
            return cache_control(content[-1])
        except FieldError as e:
            raise e.within("content", len(content) - 1)
    return None


def _decode_output(output: Any) -> list[Text | Image]:
    if isinstance(output, str):
        return [Text(output)] if output else []
    return _decode_content(output, "output")


def _decode_tool_choice(choice: Any, parallel: bool | None) -> ToolChoice | None:
    result: ToolChoice | None = None
    if choice == "auto":
        result = ToolChoice("auto")
    elif choice == "required":
        result = ToolChoice("any")
    elif choice == "none":
        result = ToolChoice("none")
    elif isinstance(choice, dict):
        kind = get_str(choice, "type")
        if kind in ("function", "custom") and (name := get_str(choice, "name")):
            result = ToolChoice("tool", name=name)
        elif kind == "allowed_tools":
            result = ToolChoice("any" if get_str(choice, "mode") == "required" else "auto")
        # Choices that name a built-in tool (web_search, mcp, ...) point at a tool we dropped:
        # leave the choice to the provider.
    elif isinstance(choice, str):
        raise FieldError(f"unsupported tool_choice {shown(choice)}")
    elif choice is not None:
        raise wrong_type(choice, "a string or an object")
    if result is None:
        return ToolChoice("auto", parallel=parallel) if parallel is not None else None
    result.parallel = parallel
    return result


def encode_request(request: Request) -> dict[str, Any]:
    if request.n is not None and request.n > 1:
        raise ValueError(
            "The OpenAI Responses API returns one answer per request: n > 1 is not supported."
        )
    body: dict[str, Any] = {
        "model": request.model,
        "instructions": "\n\n".join(t.text for t in request.system if t.text),
        "input": _encode_messages(request.messages),
        "store": False,
        "stream": request.stream,
    }
    if request.tools:
        body["tools"] = [_encode_tool(t) for t in request.tools]
    if (choice := request.tool_choice) is not None:
        body["tool_choice"] = _encode_tool_choice(choice, custom_tools.names(request))
        if choice.parallel is not None:
            body["parallel_tool_calls"] = choice.parallel
    reasoning = _encode_reasoning(request.reasoning) if request.reasoning else None
    if reasoning is not None:
        body["reasoning"] = reasoning
    if reasoning is not None or _replays_reasoning(request.messages):
        body["include"] = [ENCRYPTED_REASONING]
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if (fmt := request.response_format) is not None and fmt.type != "text":
        body["text"] = {"format": _encode_format(fmt)}
    # Dropped: `stop` and `top_k` (no Responses equivalent), `metadata` (only kept on stored
    # responses, and store is false).
    return body


def codex_body(body: dict[str, Any]) -> dict[str, Any]:
    """An encoded body adjusted for `chatgpt.com/backend-api/codex/responses`.

    That backend only streams, refuses `store: true`, requires `instructions`, answers
    `max_output_tokens` with 400 "Unsupported parameter", and serves reasoning models only, so
    the encrypted reasoning is always worth asking for.
    """
    body = {**body, "stream": True, "store": False}
    body.setdefault("instructions", "")
    body.pop("max_output_tokens", None)
    include = list(body.get("include") or ())
    if ENCRYPTED_REASONING not in include:
        include.append(ENCRYPTED_REASONING)
    body["include"] = include
    return body


def _encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    custom_calls: set[str] = set()  # ids of custom calls, whose outputs are custom too
    for message in messages:
        _encode_message(message, items, custom_calls)
    return items


def _encode_message(message: Message, items: list[dict[str, Any]], custom_calls: set[str]) -> None:
    """Append `message` as input items: calls, outputs and reasoning are items of their own,
    so the text and images between them are cut into several message items."""
    role = message.role
    content: list[dict[str, Any]] = []
    for part in message.parts:
        item: dict[str, Any] | None = None
        if isinstance(part, Text):
            if part.text:
                content.append(
                    {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
                )
        elif isinstance(part, Image):
            if role == "user" and (url := _image_url(part)):
                content.append({"type": "input_image", "image_url": url, "detail": "auto"})
        elif isinstance(part, ToolCall) and part.custom:
            custom_calls.add(part.id)
            text = custom_tools.input_of(part.arguments)
            item = {"type": "custom_tool_call", "call_id": part.id, "name": part.name, "input": text}
        elif isinstance(part, ToolCall):
            item = {
                "type": "function_call",
                "call_id": part.id,
                "name": part.name,
                "arguments": _arguments_json(part.arguments),
            }
        elif isinstance(part, ToolResult):
            custom = part.call_id in custom_calls
            item = {
                "type": "custom_tool_call_output" if custom else "function_call_output",
                "call_id": part.call_id,
                "output": _encode_output(part.content),
            }
        elif isinstance(part, Thinking):
            item = _encode_reasoning_item(part)
        if item is not None:
            if content:
                items.append({"type": "message", "role": role, "content": content})
                content = []
            items.append(item)
    if content:
        items.append({"type": "message", "role": role, "content": content})


def _encode_reasoning_item(thinking: Thinking) -> dict[str, Any] | None:
    # Reasoning is replayed through its encrypted content; without a signature of our own the
    # item would be a bare summary the server cannot use, so it is left out.
    if thinking.redacted or thinking.origin != ORIGIN or not thinking.signature:
        return None
    summary = [{"type": "summary_text", "text": thinking.text}] if thinking.text else []
    return {"type": "reasoning", "summary": summary, "encrypted_content": thinking.signature}


def _replays_reasoning(messages: list[Message]) -> bool:
    return any(
        isinstance(p, Thinking) and p.origin == ORIGIN and p.signature and not p.redacted
        for m in messages
        if m.role == "assistant"
        for p in m.parts
    )


def _encode_output(content: list[Text | Image]) -> str | list[dict[str, Any]]:
    # A string is what every Responses server takes; the list form only when images need it.
    if not any(isinstance(c, Image) for c in content):
        return "\n".join(c.text for c in content if isinstance(c, Text))
    parts: list[dict[str, Any]] = []
    for c in content:
        if isinstance(c, Text):
            parts.append({"type": "input_text", "text": c.text})
        elif url := _image_url(c):
            parts.append({"type": "input_image", "image_url": url, "detail": "auto"})
    return parts


def _encode_tool(tool: Tool) -> dict[str, Any]:
    if tool.custom:
        custom: dict[str, Any] = {"type": "custom", "name": tool.name}
        if tool.description:
            custom["description"] = tool.description
        if tool.format:
            custom["format"] = tool.format
        return custom
    encoded: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        encoded["description"] = tool.description
    encoded["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    encoded["strict"] = False
    return encoded


def _encode_tool_choice(choice: ToolChoice, custom: frozenset[str] = frozenset()) -> str | dict[str, Any]:
    if choice.mode == "tool" and choice.name:
        return {"type": "custom" if choice.name in custom else "function", "name": choice.name}
    return {"any": "required", "none": "none"}.get(choice.mode, "auto")


def _encode_reasoning(reasoning: Reasoning) -> dict[str, Any] | None:
    effort = effort_of(reasoning)
    if effort is None:
        return None
    if effort == "none":
        return {"effort": "none"}
    # Summaries are the only reasoning text the API returns; ask for them so that thinking
    # shows up for clients of every format. "auto" effort: the model's default.
    encoded: dict[str, Any] = {"summary": "auto"}
    if effort in _EFFORTS:
        encoded = {"effort": effort, **encoded}
    return encoded


def _encode_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type == "json_object":
        return {"type": "json_object"}
    encoded: dict[str, Any] = {
        "type": "json_schema",
        "name": fmt.name or "response",
        "schema": fmt.schema or {"type": "object"},
    }
    if fmt.strict is not None:
        encoded["strict"] = fmt.strict
    return encoded


# -- whole responses -----------------------------------------------------------------------


def decode_response(body: dict[str, Any]) -> Response:
    parts: list[Text | Thinking | ToolCall] = []
    tool_called = refused = False
    for item in body.get("output") or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            text = ""
            for c in item.get("content") or ():
                if not isinstance(c, dict):
                    continue
                if c.get("type") == "refusal":
                    refused = True
                    text += c.get("refusal") or ""
                else:
                    text += c.get("text") or ""
            if text:
                parts.append(Text(text))
        elif kind == "reasoning":
            thinking = _thinking(item)
            if thinking.text or thinking.signature:
                parts.append(thinking)
        elif kind == "function_call":
            tool_called = True
            raw = item.get("arguments")
            cut = item.get("status") == "incomplete" and isinstance(raw, str)
            parts.append(
                ToolCall(
                    id=item.get("call_id") or item.get("id") or "",
                    name=item.get("name") or "",
                    arguments=cut_arguments(raw) if cut else _arguments(raw),
                )
            )
        elif kind == "custom_tool_call":
            tool_called = True
            call_id = item.get("call_id") or item.get("id") or ""
            text = item.get("input")
            parts.append(custom_tools.call(call_id, item.get("name") or "", text if isinstance(text, str) else ""))
    created = body.get("created_at")
    return Response(
        id=body.get("id") or "",
        model=body.get("model") or "",
        parts=parts,
        stop_reason=_stop_reason(
            body.get("status"), body.get("incomplete_details"), tool_called, refused
        ),
        usage=_usage(body.get("usage")),
        created=int(created) if isinstance(created, (int, float)) else 0,
    )


def _response_id(raw: str) -> str:
    return raw if raw.startswith("resp_") else f"resp_{raw}"


def _item_ids(response_id: str) -> str:
    """The stem that, with a prefix and an output index, names an item of this response."""
    return response_id.removeprefix("resp_")


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_output_text(text)],
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning_item(
    item_id: str, text: str, signature: str | None, status: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    if status is not None:  # only said of a reasoning item the token limit cut
        item["status"] = status
    return item


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _custom_item(item_id: str, call_id: str, name: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "custom_tool_call",
        "call_id": call_id,
        "name": name,
        "input": text,
        "status": status,
    }


def _terminal_fields(stop: StopReason) -> dict[str, Any]:
    if stop is StopReason.MAX_TOKENS:
        return {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    if stop is StopReason.REFUSAL:
        return {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}
    if stop is StopReason.ERROR:
        return {
            "status": "failed",
            "error": {"code": "server_error", "message": "The upstream model reported an error."},
        }
    return {"status": "completed"}


def _response_json(
    response_id: str,
    model: str,
    created: int,
    request: Request | None = None,
) -> dict[str, Any]:
    """A Response object's fields, as api.openai.com sends them while it is in progress."""
    choice = request.tool_choice if request else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": request.max_tokens if request else None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True if choice is None or choice.parallel is None else choice.parallel,
        "temperature": request.temperature if request else None,
        "tool_choice": _encode_tool_choice(choice) if choice else "auto",
        "tools": [],
        "top_p": request.top_p if request else None,
        "usage": None,
        "metadata": {},
    }


def encode_response(response: Response) -> dict[str, Any]:
    response_id = _response_id(response.id)
    stem = _item_ids(response_id)
    output: list[dict[str, Any]] = []
    cut = cut_off(response)
    for index, part in enumerate(response.parts):
        status = "incomplete" if part is cut else "completed"
        if isinstance(part, Text):
            output.append(_message_item(f"msg_{stem}_{index}", part.text, status))
        elif isinstance(part, Thinking):
            # Even a thinking part with nothing to show keeps its item, as it does in a stream.
            signature = part.signature if part.origin == ORIGIN else None
            cut_status = status if part is cut else None
            output.append(_reasoning_item(f"rs_{stem}_{index}", part.text, signature, cut_status))
        elif isinstance(part, ToolCall):
            call_id = part.id or f"call_{stem}_{index}"
            if part.custom:
                text = custom_tools.input_of(part.arguments)
                output.append(_custom_item(f"ctc_{stem}_{index}", call_id, part.name, text, status))
            else:
                arguments = _arguments_json(part.arguments)
                output.append(_call_item(f"fc_{stem}_{index}", call_id, part.name, arguments, status))
    body = _response_json(response_id, response.model, response.created)
    body.update(_terminal_fields(response.stop_reason))
    body["output"] = output
    body["usage"] = _usage_json(response.usage)
    return body


def error_message(parsed: Any) -> str | None:
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        for key in ("message", "type", "code"):
            if isinstance(value := error.get(key), str) and value:
                return value
        return None
    if isinstance(error, str) and error:
        return error
    # The Codex backend answers FastAPI-style: {"detail": "..."} or {"detail": [{"msg": ...}]}.
    detail = parsed.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list):
        messages = [
            d.get("msg") for d in detail if isinstance(d, dict) and isinstance(d.get("msg"), str)
        ]
        return "; ".join(messages) or None
    if parsed.get("type") == "error" and isinstance(message := parsed.get("message"), str):
        return message
    return None


# -- stream decoding -----------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One upstream output item, as far as the decoder has followed it."""

    kind: str  # "text" | "thinking" | "tool_call" | "other"
    call_id: str = ""
    name: str = ""
    block: int | None = None  # canonical index, once its block has started
    emitted: int = 0  # characters of text / arguments already sent as deltas
    source: str | None = None  # thinking: "summary" or "content", whichever streamed first
    summary_index: int = -1
    closed: bool = False


_ITEM_KINDS = {
    "message": "text",
    "reasoning": "thinking",
    "function_call": "tool_call",
    "custom_tool_call": "custom",  # a tool_call block whose arguments are {"input": ...}
}
_STREAM_EVENTS = frozenset(
    {
        "error",
        "response.failed",
        "response.completed",
        "response.incomplete",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    }
)


class StreamDecoder:
    """Responses SSE bytes -> canonical events."""

    def __init__(self) -> None:
        self._reader = SSEReader()
        self._started = False
        self._done = False
        self._items: dict[int, _Item] = {}
        self._ids: dict[str, int] = {}  # item id -> output_index, for events without the index
        self._open: _Item | None = None
        self._blocks = 0
        self._tool_called = False
        self._refused = False

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for _, data in self._reader.frames(chunk):
            self._handle(data, events)
        return events

    def close(self) -> list[Event]:
        events: list[Event] = []
        for _, data in self._reader.close_frames():
            self._handle(data, events)
        if not self._done:
            self._close_block(events)
            events.append(StreamError("upstream stream ended early"))
            self._done = True
        return events

    # -- internals

    def _handle(self, data: bytes, events: list[Event]) -> None:
        if self._done or not data or data == b"[DONE]":
            return
        try:
            event = loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "response.output_text.delta" and self._started:
            # Most of a stream, so tested first; the chain below would end the same way.
            if (item := self._item_of(event, "text")) is not None:
                self._text(item, event.get("delta") or "", events)
            return
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._start(event.get("response"), events)
            return
        if kind not in _STREAM_EVENTS:
            return  # ping, rate-limit notices, built-in tool progress, annotations
        if kind == "error":
            self._fail(
                event.get("message") or "upstream error", _error_status(event.get("code")), events
            )
            return
        if kind == "response.failed":
            response = event.get("response") or {}
            error = response.get("error") or {}
            self._fail(
                error.get("message") or "upstream response failed",
                _error_status(error.get("code")),
                events,
            )
            return
        self._start(event.get("response"), events)
        if kind == "response.completed" or kind == "response.incomplete":
            self._finish(event.get("response") or {}, events)
        elif kind == "response.output_item.added":
            self._added(event, events)
        elif kind == "response.output_item.done":
            self._item_done(event, events)
        elif kind in (
            "response.content_part.added",
            "response.output_text.delta",
            "response.refusal.delta",
        ):
            if (item := self._item_of(event, "text")) is not None:
                if kind == "response.refusal.delta":
                    self._refused = True
                self._text(item, event.get("delta") or "", events)
        elif kind == "response.reasoning_summary_text.delta":
            if (item := self._item_of(event, "thinking")) is not None:
                self._summary(item, event, events)
        elif kind == "response.reasoning_text.delta":
            if (item := self._item_of(event, "thinking")) is not None:
                if item.source in (None, "content"):
                    item.source = "content"
                    self._text(item, event.get("delta") or "", events)
        elif kind == "response.function_call_arguments.delta":
            if (item := self._item(event)) is not None and item.kind == "tool_call":
                self._text(item, event.get("delta") or "", events)
        elif kind == "response.function_call_arguments.done":
            if (item := self._item(event)) is not None and item.kind == "tool_call":
                self._catch_up(item, event.get("arguments") or "", events)
        elif kind == "response.custom_tool_call_input.delta":
            if (item := self._item(event)) is not None and item.kind == "custom":
                self._text(item, event.get("delta") or "", events)
        elif kind == "response.custom_tool_call_input.done":
            if (item := self._item(event)) is not None and item.kind == "custom":
                self._catch_up(item, event.get("input") or "", events)

    def _start(self, response: Any, events: list[Event]) -> None:
        if self._started:
            return
        self._started = True
        response = response if isinstance(response, dict) else {}
        created = response.get("created_at")
        events.append(
            Start(
                id=response.get("id") or "",
                model=response.get("model") or "",
                created=int(created) if isinstance(created, (int, float)) else 0,
            )
        )

    def _item(self, event: dict[str, Any]) -> _Item | None:
        index = event.get("output_index")
        if not isinstance(index, int):
            index = self._ids.get(event.get("item_id") or "")
        return self._items.get(index) if index is not None else None

    def _item_of(self, event: dict[str, Any], kind: str) -> _Item | None:
        """The item a text or reasoning event is for. One that names no item this stream
        announced (no `output_item.added`, no `item_id` / `output_index`) still carries
        content: it belongs to the open item of its kind, or to a new one."""
        item = self._item(event)
        if item is not None:
            return item if item.kind == kind else None
        index = event.get("output_index")
        if not isinstance(index, int):
            if self._open is not None and self._open.kind == kind:
                return self._open
            index = min(0, min(self._items, default=0)) - 1  # a key no announced item has
        item = self._items[index] = _Item(kind)
        if isinstance(item_id := event.get("item_id"), str) and item_id:
            self._ids[item_id] = index
        return item

    def _added(self, event: dict[str, Any], events: list[Event]) -> None:
        raw = event.get("item")
        index = event.get("output_index")
        if not isinstance(raw, dict) or not isinstance(index, int):
            return
        item = _Item(_ITEM_KINDS.get(raw.get("type") or "", "other"))
        self._items[index] = item
        if isinstance(raw.get("id"), str):
            self._ids[raw["id"]] = index
        if item.kind == "thinking":
            self._open_block(item, events)
        elif item.kind in ("tool_call", "custom"):
            self._tool_called = True
            item.call_id = raw.get("call_id") or raw.get("id") or ""
            item.name = raw.get("name") or ""
            self._open_block(item, events)
            self._catch_up(item, raw.get("arguments" if item.kind == "tool_call" else "input") or "", events)
        # A message opens its text block when its first content part starts.

    def _open_block(self, item: _Item, events: list[Event]) -> None:
        if item.block is not None or item.closed:
            return
        self._close_block(events)
        item.block = self._blocks
        self._blocks += 1
        self._open = item
        if item.kind == "tool_call":
            events.append(BlockStart(item.block, "tool_call", id=item.call_id, name=item.name))
        elif item.kind == "custom":
            events.append(BlockStart(item.block, "tool_call", id=item.call_id, name=item.name))
            events.append(Delta(item.block, arguments=custom_tools.OPEN))
        else:
            events.append(BlockStart(item.block, item.kind))  # type: ignore[arg-type]

    def _close_block(self, events: list[Event]) -> None:
        if self._open is not None:
            events.append(BlockStop(self._open.block))  # type: ignore[arg-type]
            self._open.closed = True
            self._open = None

    def _text(self, item: _Item, text: str, events: list[Event]) -> None:
        if item.closed:
            return
        self._open_block(item, events)
        if text:
            item.emitted += len(text)
            if item.kind == "tool_call":
                events.append(Delta(item.block, arguments=text))  # type: ignore[arg-type]
            elif item.kind == "custom":
                events.append(Delta(item.block, arguments=custom_tools.escape(text)))  # type: ignore[arg-type]
            else:
                events.append(Delta(item.block, text))  # type: ignore[arg-type]

    def _catch_up(self, item: _Item, final: str, events: list[Event]) -> None:
        """Send whatever part of an item's final text or arguments no delta carried."""
        if len(final) > item.emitted:
            self._text(item, final[item.emitted :], events)

    def _summary(self, item: _Item, event: dict[str, Any], events: list[Event]) -> None:
        if item.source == "content":
            return
        item.source = "summary"
        index = event.get("summary_index")
        index = index if isinstance(index, int) else 0
        delta = event.get("delta") or ""
        if index != item.summary_index:
            if item.summary_index >= 0:
                delta = _SUMMARY_SEPARATOR + delta
            item.summary_index = index
        self._text(item, delta, events)

    def _item_done(self, event: dict[str, Any], events: list[Event]) -> None:
        raw = event.get("item")
        index = event.get("output_index")
        if not isinstance(raw, dict):
            return
        item = self._items.get(index) if isinstance(index, int) else None
        if item is None:
            # No `added` for it: treat `done` as the whole item.
            self._added({"item": {**raw, "arguments": ""}, "output_index": index}, events)
            if (item := self._items.get(index)) is None:  # type: ignore[arg-type]
                return
        if item.kind == "other" or item.closed:
            return
        if item.kind == "text":
            final = ""
            for c in raw.get("content") or ():
                if isinstance(c, dict):
                    if c.get("type") == "refusal":
                        self._refused = True
                        final += c.get("refusal") or ""
                    else:
                        final += c.get("text") or ""
            self._catch_up(item, final, events)
            if item.block is None:
                return  # an empty message: no block at all
        elif item.kind == "thinking":
            if item.source == "content":
                final = "".join(
                    c.get("text") or "" for c in raw.get("content") or () if isinstance(c, dict)
                )
            else:
                final = _thinking_text(raw)
            self._catch_up(item, final, events)
            if signature := raw.get("encrypted_content"):
                events.append(Delta(item.block, signature=signature))  # type: ignore[arg-type]
        elif item.kind == "tool_call":
            self._catch_up(item, raw.get("arguments") or "", events)
        elif item.kind == "custom":
            self._catch_up(item, raw.get("input") or "", events)
            if raw.get("status") != "incomplete":
                events.append(Delta(item.block, arguments=custom_tools.CLOSE))  # type: ignore[arg-type]
        if self._open is item:
            self._close_block(events)

    def _finish(self, response: dict[str, Any], events: list[Event]) -> None:
        status = response.get("status") or "completed"
        if self._blocks == 0:
            # Nothing streamed: the output the terminal event carries is the answer.
            for index, raw in enumerate(response.get("output") or ()):
                if isinstance(raw, dict) and index not in self._items:
                    self._item_done({"item": raw, "output_index": index}, events)
        if (item := self._open) is not None and item.kind == "custom" and status == "completed":
            events.append(Delta(item.block, arguments=custom_tools.CLOSE))  # type: ignore[arg-type]
        self._close_block(events)
        stop = _stop_reason(status, response.get("incomplete_details"), self._tool_called, self._refused)
        usage = _usage(response["usage"]) if isinstance(response.get("usage"), dict) else None
        events.append(Finish(stop, usage=usage))
        self._done = True

    def _fail(self, message: str, status: int, events: list[Event]) -> None:
        self._close_block(events)
        events.append(StreamError(message, status=status))
        self._done = True


# -- stream encoding -----------------------------------------------------------------------

# The delta events, most of a stream: a template per item around the string, written by the C
# string encoder, with the keys in the order the dicts elsewhere in this encoder have them.
_DELTA_HEAD = b'event: %s\ndata: {"type":"%s","item_id":%s,"output_index":%d,'
_DELTA_FIELDS = {
    "text": (b"response.output_text.delta", b'"content_index":0,', b',"logprobs":[]'),
    "thinking": (b"response.reasoning_summary_text.delta", b'"summary_index":0,', b""),
    "tool_call": (b"response.function_call_arguments.delta", b"", b""),
    "custom": (b"response.custom_tool_call_input.delta", b"", b""),
}


class StreamEncoder:
    """Canonical events -> the SSE stream api.openai.com would send for `/v1/responses`.

    Thinking signatures are passed on as `encrypted_content` only when the events were decoded
    from this format: `Start.origin` says so, or, for a stream without it, `origin`.
    """

    def __init__(self, request: Request, sse: bool = True, *, origin: str | None = None) -> None:
        self._request = request
        self._keep_signatures = origin == ORIGIN
        self._sequence = 0
        self._base: dict[str, Any] | None = None  # the response object, minus its output
        self._stem = ""
        self._output: list[dict[str, Any]] = []
        self._done = False
        self._start_usage: Usage | None = None
        # the open item
        self._kind: str | None = None
        self._item_id = ""
        self._index = 0
        self._fragments: list[str] = []
        self._call_id = ""
        self._name = ""
        self._signature: str | None = None
        self._summary_open = False
        self._delta_head = b""  # the open item's delta event, up to the string
        self._delta_tail = b""  # and after it, up to the sequence number
        # The open item's block has stopped; whether it finished or was cut off, the next
        # event tells (a Finish with MAX_TOKENS: cut off).
        self._stopped = False
        self._custom = custom_tools.names(request)
        self._reader: custom_tools.InputReader | None = None  # the open custom call's input

    def encode(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, Start):
            if event.origin is not None:
                self._keep_signatures = event.origin == ORIGIN
            # Some upstreams report the prompt's usage up front only; keep it for the end.
            self._start_usage = event.usage
            return self._start(event.id, event.model, event.created)
        out = b"" if self._base is not None else self._start("", "", 0)
        if isinstance(event, Delta):
            return out + self._delta(event)
        if isinstance(event, BlockStart):
            return out + self._close_item() + self._open_item(event)
        if isinstance(event, BlockStop):
            self._stopped = self._kind is not None
            return out
        if isinstance(event, Finish):
            cut = event.stop_reason is StopReason.MAX_TOKENS
            return out + self._close_item(cut) + self._finish(event.stop_reason, event.usage)
        if isinstance(event, StreamError):
            if self._stopped:
                out += self._close_item()  # it had finished before the error
            return out + self._fail(event.message, event.status)
        return out

    def close(self) -> bytes:
        if self._done:
            return b""
        out = b"" if self._base is not None else self._start("", "", 0)
        return out + self._fail("upstream stream ended early", 500)

    # -- internals

    def _emit(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self._sequence
        self._sequence += 1
        return sse_bytes(data, data["type"])

    def _emit_delta(self, text: str) -> bytes:
        """The open item's delta event for `text`: what `_emit` would write, from the template."""
        sequence = self._sequence
        self._sequence += 1
        return self._delta_head + json_string(text) + self._delta_tail + b',"sequence_number":%d}\n\n' % sequence

    def _templates(self) -> None:
        name, member, tail = _DELTA_FIELDS[self._kind]  # type: ignore[index]
        self._delta_head = (
            _DELTA_HEAD % (name, name, json_string(self._item_id), self._index) + member + b'"delta":'
        )
        self._delta_tail = tail

    def _start(self, raw_id: str, model: str, created: int) -> bytes:
        if self._base is not None:
            return b""
        response_id = _response_id(raw_id or "stream")
        self._stem = _item_ids(response_id)
        self._base = _response_json(response_id, model or self._request.model, created, self._request)
        return self._emit({"type": "response.created", "response": self._base}) + self._emit(
            {"type": "response.in_progress", "response": self._base}
        )

    def _open_item(self, event: BlockStart) -> bytes:
        out = self._added_item(event)
        self._templates()
        return out

    def _added_item(self, event: BlockStart) -> bytes:
        self._index = len(self._output)
        self._kind = event.kind
        self._fragments = []
        self._signature = None
        self._summary_open = False
        index = self._index
        if event.kind == "text":
            self._item_id = item_id = f"msg_{self._stem}_{index}"
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            return self._emit(
                {"type": "response.output_item.added", "output_index": index, "item": item}
            ) + self._emit(
                {
                    "type": "response.content_part.added",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": _output_text(""),
                }
            )
        if event.kind == "thinking":
            self._item_id = item_id = f"rs_{self._stem}_{index}"
            item = {"id": item_id, "type": "reasoning", "summary": []}
            return self._emit(
                {"type": "response.output_item.added", "output_index": index, "item": item}
            )
        self._call_id = event.id or f"call_{self._stem}_{index}"
        self._name = event.name or ""
        if self._name in self._custom:
            self._kind = "custom"
            self._reader = custom_tools.InputReader()
            self._item_id = item_id = f"ctc_{self._stem}_{index}"
            item = _custom_item(item_id, self._call_id, self._name, "", "in_progress")
        else:
            self._item_id = item_id = f"fc_{self._stem}_{index}"
            item = _call_item(item_id, self._call_id, self._name, "", "in_progress")
        return self._emit({"type": "response.output_item.added", "output_index": index, "item": item})

    def _delta(self, event: Delta) -> bytes:
        kind = self._kind
        out = b""
        if event.signature and kind == "thinking" and self._keep_signatures:
            self._signature = event.signature
        if kind == "text" and event.text:
            self._fragments.append(event.text)
            out = self._emit_delta(event.text)
        elif kind == "thinking" and event.text:
            if not self._summary_open:
                self._summary_open = True
                out = self._emit(
                    {
                        "type": "response.reasoning_summary_part.added",
                        "item_id": self._item_id,
                        "output_index": self._index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    }
                )
            self._fragments.append(event.text)
            out += self._emit_delta(event.text)
        elif kind == "tool_call" and event.arguments:
            out = self._delta_arguments(event.arguments)
        elif kind == "custom" and event.arguments:
            out = self._delta_input(self._reader.feed(event.arguments))  # type: ignore[union-attr]
        return out

    def _close_item(self, cut: bool = False) -> bytes:
        """The open item's end: finished, or (`cut`) cut off by the token limit."""
        kind = self._kind
        if kind is None:
            return b""
        self._kind = None
        self._stopped = False
        status = "incomplete" if cut else "completed"
        item_id, index = self._item_id, self._index
        if kind == "text":
            text = "".join(self._fragments)
            part = _output_text(text)
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": [part],
            }
            out = self._emit(
                {
                    "type": "response.output_text.done",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            ) + self._emit(
                {
                    "type": "response.content_part.done",
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
        elif kind == "thinking":
            text = "".join(self._fragments)
            out = b""
            if self._summary_open:
                out = self._emit(
                    {
                        "type": "response.reasoning_summary_text.done",
                        "item_id": item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "text": text,
                    }
                ) + self._emit(
                    {
                        "type": "response.reasoning_summary_part.done",
                        "item_id": item_id,
                        "output_index": index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": text},
                    }
                )
            item = _reasoning_item(item_id, text, self._signature, status if cut else None)
        elif kind == "custom":
            out = self._delta_input(self._reader.finish())  # type: ignore[union-attr]
            self._reader = None
            text = "".join(self._fragments)
            out += self._emit(
                {
                    "type": "response.custom_tool_call_input.done",
                    "item_id": item_id,
                    "output_index": index,
                    "input": text,
                }
            )
            item = _custom_item(item_id, self._call_id, self._name, text, status)
        else:
            out = b""
            if not self._fragments and not cut:
                # A call without arguments still needs a JSON object for the client to parse;
                # a cut-off one gets none: its arguments are what arrived.
                out = self._delta_arguments("{}")
            arguments = "".join(self._fragments)
            out += self._emit(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item_id,
                    "output_index": index,
                    "name": self._name,
                    "arguments": arguments,
                }
            )
            item = _call_item(item_id, self._call_id, self._name, arguments, status)
        self._fragments = []
        self._output.append(item)
        return out + self._emit(
            {"type": "response.output_item.done", "output_index": index, "item": item}
        )

    def _delta_input(self, text: str) -> bytes:
        if not text:
            return b""
        self._fragments.append(text)
        return self._emit_delta(text)

    def _delta_arguments(self, arguments: str) -> bytes:
        self._fragments.append(arguments)
        return self._emit_delta(arguments)

    def _finish(self, stop: StopReason, usage: Usage | None) -> bytes:
        self._done = True
        response = {**self._base, **_terminal_fields(stop)}  # type: ignore[dict-item]
        response["output"] = self._output
        usage = usage if usage is not None else self._start_usage
        response["usage"] = _usage_json(usage) if usage is not None else None
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            response["status"], "response.failed"
        )
        return self._emit({"type": kind, "response": response})

    def _fail(self, message: str, status: int) -> bytes:
        self._done = True
        # The half-written item is left out: `output` holds finished items only.
        self._kind = None
        self._reader = None
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        response = {
            **self._base,  # type: ignore[dict-item]
            "status": "failed",
            "error": {"code": code, "message": message},
            "output": self._output,
        }
        return self._emit({"type": "response.failed", "response": response})


def stream_decoder() -> StreamDecoder:
    return StreamDecoder()


def stream_encoder(request: Request, sse: bool = True) -> StreamEncoder:
    # A Responses stream is always SSE; `sse` only matters to Gemini.
    return StreamEncoder(request, sse)


CODEC = Codec(
    format=Format.OPENAI_RESPONSES,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=stream_decoder,
    stream_encoder=stream_encoder,
    error_message=error_message,
)
