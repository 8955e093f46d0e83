"""OpenAI Chat Completions (`/v1/chat/completions`) to and from the canonical model.

Mapping decisions that are not forced by the wire format:

- System and developer messages, wherever they appear, become `Request.system` in order; going
  out they are one leading `system` message (texts joined by a blank line), which every
  OpenAI-compatible server accepts.
- Consecutive `tool` messages become one user message of `ToolResult`s, and the user message that
  follows them joins that same message, after the results. Going out, each `ToolResult` becomes its
  own `tool` message right after the assistant turn, before the user's own text. Chat tool messages
  carry text only, so images of a tool result go in the user message that follows them.
- Chat has no error flag on tool results: `is_error` is dropped going out and False coming in.
- Reasoning: `reasoning_content` (the de-facto extension of DeepSeek, vLLM, SGLang) is decoded
  as `Thinking` with `origin="openai-chat"`. Going upstream, thinking is sent back as
  `reasoning_content` only when it came from a chat-format server (that origin): the servers that
  produce it read it, while OpenAI itself rejects unknown message fields. Signatures have no place
  in chat and are dropped. Responses and streams to a chat client carry thinking as
  `reasoning_content`.
- `reasoning_effort` <-> `Reasoning.effort`; a budget is turned into an effort with the shared
  table, and "auto" is left to the server's default.
- `max_completion_tokens` (or the deprecated `max_tokens`) <-> `max_tokens`; going out
  `max_completion_tokens`, which reasoning models require.
- Tool-call ids pass through when OpenAI would accept them (1-40 characters); others become
  `call_<sha256 prefix>`, the same for the call and its result.
- `n > 1` cannot be carried by the one-choice canonical response: `encode_request` refuses it.
- Parameters without a canonical field (seed, penalties, logit_bias, logprobs, user, metadata,
  store, service_tier, ...) are not carried. Content that cannot be carried without changing the
  answer (audio input, files by id, legacy `functions`) raises `ValueError`.
- Custom (freeform) tools and calls (`{"type": "custom", "custom": {...}}`) are carried, see
  `translators.custom_tools`; streamed, a custom call's fragments are
  `{"index", "id", "type": "custom", "custom": {"name", "input"}}`.
- `cache_control` (LiteLLM's and OpenRouter's convention for Anthropic prompt caching) on content
  parts, on system / developer / user / tool messages (marking their last block) and on tools
  is kept for Anthropic upstreams.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
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
)
from translators import custom_tools
from translators.codec import Codec
from translators.jsonutil import compact, json_string
from translators.errors import error_body
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
from translators.formats import Format
from translators.reasoning import effort_of
from translators.sse import SSEReader, loads

ORIGIN = Format.OPENAI_CHAT.value

_DATA_URL = re.compile(r"^data:([^;,]+)(;[^,]*)?;base64,(.*)$", re.DOTALL)

# Enough to label the common kinds of linked file; anything else stays "" (unknown).
_EXTENSION_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}

_MAX_TOOL_CALL_ID = 40  # OpenAI: "Expected a string with maximum length 40"

_FINISH_REASONS = {
    "stop": StopReason.END,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.REFUSAL,
}


_dumps = compact


# -- shared pieces ---------------------------------------------------------------------------


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON-string arguments as an object; what is not an object is kept raw."""
    if isinstance(arguments, dict):  # some servers send an object already
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def dump_arguments(arguments: dict[str, Any]) -> str:
    raw = arguments.get("_raw")
    if len(arguments) == 1 and isinstance(raw, str):
        return raw
    return _dumps(arguments)


def chat_tool_call_id(call_id: str) -> str:
    """`call_id` if OpenAI accepts it, else a stable replacement of acceptable length."""
    if 0 < len(call_id) <= _MAX_TOOL_CALL_ID:
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


def _media_type_of_url(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    dot = path.rfind(".")
    return _EXTENSION_TYPES.get(path[dot:], "") if dot >= 0 else ""


def _image_from_url(url: str) -> Image:
    if m := _DATA_URL.match(url):
        return Image(media_type=m.group(1), data=m.group(3))
    return Image(media_type=_media_type_of_url(url), url=url)


def _decode_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _encode_usage(usage: Usage) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _stop_reason(finish_reason: Any, tool_used: bool) -> StopReason:
    reason = _FINISH_REASONS.get(finish_reason, StopReason.END)
    # Some servers end a tool-calling turn with "stop"; the calls are what the client acts on.
    if tool_used and reason is StopReason.END:
        return StopReason.TOOL_USE
    return reason


def _finish_reason(stop_reason: StopReason, tool_used: bool) -> str:
    if stop_reason is StopReason.MAX_TOKENS:
        return "length"
    if stop_reason is StopReason.REFUSAL:
        return "content_filter"
    # A tool call wins over "stop": clients only run the tools on "tool_calls".
    return "tool_calls" if tool_used else "stop"


# -- requests: chat -> canonical ---------------------------------------------------------------


def decode_request(body: dict[str, Any]) -> Request:
    if "messages" not in body:
        raise FieldError("required", "messages")
    messages = get_list(body, "messages")
    if body.get("functions") or body.get("function_call"):
        raise ValueError("legacy 'functions' / 'function_call' are not supported; use 'tools'")
    system, decoded = _decode_messages(messages)
    tools = _decode_tools(get_list(body, "tools"))
    with at("tool_choice"):
        tool_choice, tools = _decode_tool_choice(body.get("tool_choice"), tools)
    if (parallel := get_bool(body, "parallel_tool_calls")) is not None and tools:
        tool_choice = tool_choice or ToolChoice()
        tool_choice.parallel = parallel
    max_tokens = get_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens")
    effort = get_str(body, "reasoning_effort")
    stream = bool(get_bool(body, "stream"))
    stream_options = get_dict(body, "stream_options")
    with at("stream_options"):
        include_usage = get_bool(stream_options, "include_usage")
    if (response_format := get_dict_or_none(body, "response_format")) is not None:
        with at("response_format"):
            response_format = _decode_response_format(response_format)
    return Request(
        model=get_str(body, "model") or "",
        messages=decoded,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        temperature=get_number(body, "temperature"),
        top_p=get_number(body, "top_p"),
        top_k=get_int(body, "top_k"),  # not OpenAI's, but vLLM-style servers take it
        stop=get_stop(body, "stop"),
        stream=stream,
        reasoning=Reasoning(effort=effort) if effort is not None else None,
        response_format=response_format,
        n=get_int(body, "n"),
        stream_usage=bool(stream and include_usage),
    )


def _decode_messages(messages: list[Any]) -> tuple[list[Text], list[Message]]:
    system: list[Text] = []
    out: list[Message] = []
    # The user message made of tool results that the next tool result or user content joins.
    results: Message | None = None
    names: dict[str, str] = {}  # tool-call id -> tool name, for ToolResult.name
    for index, message in dicts(messages, "messages"):
        try:
            role = get_str(message, "role")
            # LiteLLM's message-level cache_control marks the message's last block.
            mark = cache_control(message)
            if role in ("system", "developer"):
                texts = [p for p in _decode_content(message) if isinstance(p, Text)]
                if texts and mark:
                    texts[-1].cache_control = mark
                system.extend(texts)
            elif role == "user":
                parts = _decode_content(message)
                if parts and mark:
                    parts[-1].cache_control = mark
                if results is not None:
                    results.parts.extend(parts)
                elif parts:
                    out.append(Message("user", parts))
                results = None
            elif role == "assistant":
                results = None
                assistant = _decode_assistant(message)
                for part in assistant.parts:
                    if isinstance(part, ToolCall):
                        names[part.id] = part.name
                if assistant.parts:
                    out.append(assistant)
            elif role == "tool":
                call_id = get_str(message, "tool_call_id") or ""
                content = _decode_content(message)
                result = ToolResult(call_id=call_id, content=content, name=names.get(call_id), cache_control=mark)
                if results is None:
                    results = Message("user", [])
                    out.append(results)
                results.parts.append(result)
            elif role == "function":
                raise ValueError("legacy 'function' messages are not supported; use 'tool' messages")
            else:
                raise FieldError(f"unsupported role {shown(role)}", "role")
        except FieldError as e:
            raise e.within("messages", index)
    return system, out


def _decode_content(message: dict[str, Any]) -> list[Text | Image]:
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise wrong_type(content, "a string or a list of content parts", "content")
    parts: list[Text | Image] = []
    for index, part in dicts(content, "content"):
        try:
            kind = get_str(part, "type")
            if kind == "text":
                if text := get_str(part, "text"):
                    parts.append(Text(text, cache_control(part)))
            elif kind == "refusal":
                if text := get_str(part, "refusal"):
                    parts.append(Text(text))
            elif kind == "image_url":
                parts.append(_decode_image_url(part.get("image_url")))
                parts[-1].cache_control = cache_control(part)
            elif kind == "file":
                parts.append(_decode_file(get_dict(part, "file")))
                parts[-1].cache_control = cache_control(part)
            else:
                raise FieldError(f"content parts of type {shown(kind)} cannot be translated", "type")
        except FieldError as e:
            raise e.within("content", index)
    return parts


def _decode_image_url(image_url: Any) -> Image:
    url = image_url
    if isinstance(image_url, dict):
        try:
            url = get_str(image_url, "url")
        except FieldError as e:
            raise e.within("image_url")
    elif not isinstance(image_url, (str, type(None))):
        raise wrong_type(image_url, "an object with a url", "image_url")
    if not url:
        raise FieldError("image_url part without a url", "image_url")
    return _image_from_url(url)


def _decode_file(file: dict[str, Any]) -> Image:
    # The canonical model has no file part: an inline file travels as an Image of its media type.
    try:
        data = get_str(file, "file_data")
        filename = get_str(file, "filename") or ""
    except FieldError as e:
        raise e.within("file")
    if not data:
        raise ValueError("file parts referring to an uploaded file_id cannot be translated")
    if m := _DATA_URL.match(data):
        return Image(media_type=m.group(1), data=m.group(3))
    return Image(media_type=_media_type_of_url(filename) or "application/pdf", data=data)


def _decode_assistant(message: dict[str, Any]) -> Message:
    parts: list[Part] = []
    reasoning = get_str(message, "reasoning_content")
    if reasoning is None and isinstance(message.get("reasoning"), str):
        reasoning = message["reasoning"]  # OpenRouter's name for it
    if reasoning:
        parts.append(Thinking(text=reasoning, origin=ORIGIN))
    parts.extend(_decode_content(message))
    if refusal := get_str(message, "refusal"):
        parts.append(Text(refusal))
    if "tool_calls" in message:
        parts.extend(_decode_tool_calls(get_list(message, "tool_calls")))
    return Message("assistant", parts)


def _function(owner: dict[str, Any], key: str = "function") -> tuple[str, dict[str, Any]]:
    """A tool's or a call's `function` object (a custom one's `custom`), and its name."""
    function = get_dict(owner, key)
    try:
        return get_str(function, "name") or "", function
    except FieldError as e:
        raise e.within(key)


def _decode_tool_calls(tool_calls: list[Any]) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for index, call in dicts(tool_calls, "tool_calls"):
        try:
            kind = get_str(call, "type")
            if kind == "custom":
                name, custom = _function(call, "custom")
                try:
                    text = get_str(custom, "input") or ""
                except FieldError as e:
                    raise e.within("custom")
                calls.append(custom_tools.call(get_str(call, "id") or "", name, text))
                continue
            if kind not in (None, "function"):
                raise FieldError(f"tool calls of type {shown(kind)} cannot be translated", "type")
            name, function = _function(call)
            arguments = function.get("arguments")
            if not isinstance(arguments, (str, dict, type(None))):
                raise wrong_type(arguments, "a string of JSON", "function", "arguments")
            calls.append(ToolCall(id=get_str(call, "id") or "", name=name, arguments=parse_arguments(arguments)))
        except FieldError as e:
            raise e.within("tool_calls", index)
    return calls


def _decode_tools(tools: list[Any]) -> list[Tool]:
    decoded: list[Tool] = []
    for index, tool in dicts(tools, "tools"):
        try:
            kind = get_str(tool, "type")
            if kind == "custom":
                name, custom = _function(tool, "custom")
                try:
                    description = get_str(custom, "description") or ""
                    fmt = custom_tools.decode_format(custom)
                except FieldError as e:
                    raise e.within("custom")
                decoded.append(custom_tools.tool(name, description, fmt))
                decoded[-1].cache_control = cache_control(tool)
                continue
            if kind not in (None, "function"):
                raise FieldError(f"tools of type {shown(kind)} cannot be translated", "type")
            name, function = _function(tool)
            try:
                description = get_str(function, "description") or ""
                parameters = get_dict(function, "parameters")
                inner_mark = cache_control(function)  # some clients mark the function itself
            except FieldError as e:
                raise e.within("function")
            mark = cache_control(tool) or inner_mark
            decoded.append(Tool(name=name, description=description, parameters=parameters, cache_control=mark))
        except FieldError as e:
            raise e.within("tools", index)
    return decoded


def _encode_custom_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "grammar" and "grammar" not in fmt:
        return {"type": "grammar", "grammar": {"definition": fmt.get("definition"), "syntax": fmt.get("syntax")}}
    return fmt


def _decode_tool_choice(raw: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    if raw is None:
        return None, tools
    if raw in ("none", "auto"):
        return ToolChoice(raw), tools
    if raw == "required":
        return ToolChoice("any"), tools
    if isinstance(raw, dict):
        kind = get_str(raw, "type")
        if kind in ("function", "custom"):
            return ToolChoice("tool", name=_function(raw, kind)[0] or None), tools
        if kind == "allowed_tools":
            # Only the listed tools may be called: offering only those has the same effect.
            allowed = get_dict(raw, "allowed_tools")
            with at("allowed_tools"):
                names = set()
                for index, tool in dicts(get_list(allowed, "tools"), "tools"):
                    try:
                        names.add(_function(tool, "custom" if get_str(tool, "type") == "custom" else "function")[0])
                    except FieldError as e:
                        raise e.within("tools", index)
                mode = "any" if get_str(allowed, "mode") == "required" else "auto"
            return ToolChoice(mode), [t for t in tools if t.name in names]
    if not isinstance(raw, (str, dict)):
        raise wrong_type(raw, "a string or an object")
    raise FieldError(f"unsupported tool_choice {shown(raw)}")


def _decode_response_format(raw: dict[str, Any]) -> ResponseFormat:
    kind = get_str(raw, "type")
    if kind == "json_schema":
        spec = get_dict(raw, "json_schema")
        with at("json_schema"):
            return ResponseFormat(
                "json_schema",
                schema=get_dict_or_none(spec, "schema"),
                name=get_str(spec, "name"),
                strict=get_bool(spec, "strict"),
            )
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "text":
        return ResponseFormat("text")
    raise FieldError(f"unsupported response_format type {shown(kind)}", "type")


# -- requests: canonical -> chat ---------------------------------------------------------------


def encode_request(request: Request) -> dict[str, Any]:
    if request.n is not None and request.n > 1:
        raise ValueError("n > 1 is not supported when translating between API formats")
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": "\n\n".join(t.text for t in request.system)})
    for message in request.messages:
        if message.role == "assistant":
            if encoded := _encode_assistant(message):
                messages.append(encoded)
        else:
            messages.extend(_encode_user(message))
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.max_tokens is not None:
        body["max_completion_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    # OpenAI rejects tool_choice and parallel_tool_calls without tools.
    if request.tools:
        body["tools"] = [_encode_tool(t) for t in request.tools]
        if (choice := request.tool_choice) is not None:
            if encoded_choice := _encode_tool_choice(choice, custom_tools.names(request)):
                body["tool_choice"] = encoded_choice
            if choice.parallel is not None:
                body["parallel_tool_calls"] = choice.parallel
    if request.reasoning is not None:
        effort = effort_of(request.reasoning)
        if effort and effort != "auto":
            body["reasoning_effort"] = effort
    if (fmt := request.response_format) is not None:
        body["response_format"] = _encode_response_format(fmt)
    if request.stream:
        body["stream"] = True
        # Without it the upstream never reports usage on a stream.
        body["stream_options"] = {"include_usage": True}
    return body


def _encode_part(part: Text | Image) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    media_type = part.media_type or "image/png"
    if part.data is not None and not media_type.startswith("image/"):
        return {
            "type": "file",
            "file": {"file_data": f"data:{media_type};base64,{part.data}", "filename": _filename(media_type)},
        }
    url = f"data:{media_type};base64,{part.data}" if part.data is not None else part.url or ""
    return {"type": "image_url", "image_url": {"url": url}}


def _filename(media_type: str) -> str:
    for extension, known in _EXTENSION_TYPES.items():
        if known == media_type:
            return "file" + extension
    return "file"


def _encode_user(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    content: list[Text | Image] = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            texts = [p.text for p in part.content if isinstance(p, Text)]
            out.append(
                {"role": "tool", "tool_call_id": chat_tool_call_id(part.call_id), "content": "\n".join(texts)}
            )
            # Tool messages carry text only; the images follow in the user message.
            content.extend(p for p in part.content if isinstance(p, Image))
    content.extend(p for p in message.parts if isinstance(p, Image) or (isinstance(p, Text) and p.text))
    if len(content) == 1 and isinstance(content[0], Text):
        out.append({"role": "user", "content": content[0].text})
    elif content:
        out.append({"role": "user", "content": [_encode_part(p) for p in content]})
    return out


def _encode_assistant(message: Message) -> dict[str, Any] | None:
    texts = [p.text for p in message.parts if isinstance(p, Text) and p.text]
    reasoning = "".join(
        p.text for p in message.parts if isinstance(p, Thinking) and p.origin == ORIGIN and not p.redacted
    )
    calls = [_encode_call(chat_tool_call_id(p.id), p) for p in message.parts if isinstance(p, ToolCall)]
    if not texts and not calls and not reasoning:
        return None
    # Joined as a streamed answer's text blocks would reach a chat client: back to back.
    encoded: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        encoded["reasoning_content"] = reasoning
    if calls:
        encoded["tool_calls"] = calls
    elif encoded["content"] is None:
        encoded["content"] = ""  # null content is only allowed beside tool_calls
    return encoded


def _encode_call(call_id: str, call: ToolCall) -> dict[str, Any]:
    if call.custom:
        custom = {"name": call.name, "input": custom_tools.input_of(call.arguments)}
        return {"id": call_id, "type": "custom", "custom": custom}
    return {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": dump_arguments(call.arguments)}}


def _encode_tool(tool: Tool) -> dict[str, Any]:
    if tool.custom:
        custom: dict[str, Any] = {"name": tool.name}
        if tool.description:
            custom["description"] = tool.description
        if tool.format:
            custom["format"] = _encode_custom_format(tool.format)
        return {"type": "custom", "custom": custom}
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _encode_tool_choice(choice: ToolChoice, custom: frozenset[str]) -> str | dict[str, Any] | None:
    if choice.mode == "tool" and choice.name:
        kind = "custom" if choice.name in custom else "function"
        return {"type": kind, kind: {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(choice.mode)


def _encode_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


# -- whole responses -------------------------------------------------------------------------


def decode_response(body: dict[str, Any]) -> Response:
    choices = body.get("choices") or []
    choice = choices[0] if choices else {}
    parts: list[Text | Thinking | ToolCall] = []
    finish = choice.get("finish_reason")
    refused = False
    if isinstance(message := choice.get("message"), dict):
        decoded = _decode_assistant(message)
        parts = [p for p in decoded.parts if isinstance(p, (Text, Thinking, ToolCall))]
        refused = bool(message.get("refusal"))
    tool_used = any(isinstance(p, ToolCall) for p in parts)
    stop_reason = _stop_reason(finish, tool_used)
    if stop_reason is StopReason.MAX_TOKENS and parts and isinstance(cut := parts[-1], ToolCall):
        # The last call was cut off: its arguments are what arrived, even nothing.
        raw = ((message.get("tool_calls") or [{}])[-1].get("function") or {}).get("arguments")
        if isinstance(raw, str) and not cut.custom:
            cut.arguments = cut_arguments(raw)
    if refused and stop_reason is StopReason.END:
        stop_reason = StopReason.REFUSAL
    return Response(
        id=body.get("id") or "",
        model=body.get("model") or "",
        parts=parts,
        stop_reason=stop_reason,
        usage=_decode_usage(body.get("usage")) or Usage(),
        created=body.get("created") or 0,
    )


def encode_response(response: Response) -> dict[str, Any]:
    texts = [p.text for p in response.parts if isinstance(p, Text)]
    reasoning = "".join(p.text for p in response.parts if isinstance(p, Thinking) and not p.redacted)
    calls = [_encode_call(p.id, p) for p in response.parts if isinstance(p, ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created or int(time.time()),
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(response.stop_reason, bool(calls)),
                "logprobs": None,
            }
        ],
        "usage": _encode_usage(response.usage),
    }


# -- streams: chat -> canonical ----------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """A streamed tool call, keyed by its `index` in `delta.tool_calls`."""

    key: int
    id: str = ""
    name: str = ""
    block: int = -1  # canonical block index once started
    pending: list[str] = field(default_factory=list)  # argument fragments before the start
    custom: bool = False  # a custom tool's call: its input goes out as {"input": ...} JSON


class ChatStreamDecoder:
    """Chat completion chunks in, canonical events out.

    Tool calls are keyed on `index`; a call's block starts once its name is known and either its id
    or some arguments have arrived (a few servers send the id on a later fragment). The Finish waits
    for the usage-only chunk, `[DONE]` or the end of the stream, since usage follows finish_reason.
    """

    def __init__(self) -> None:
        self._reader = SSEReader()
        self._started = False
        self._done = False  # Finish or StreamError sent
        self._id = ""
        self._next_block = 0
        self._block = -1  # the open block, -1 if none
        self._kind: str | None = None  # its kind
        self._calls: dict[int, _Call] = {}
        self._call: _Call | None = None  # the open or not yet started tool call
        self._tool_used = False
        self._refused = False
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        if not self._done:
            for name, data in self._reader.frames(chunk):
                self._handle(name, data, events)
                if self._done:
                    break
        return events

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._done:
            return events
        for name, data in self._reader.close_frames():
            self._handle(name, data, events)
            if self._done:
                return events
        if self._finish_reason is not None:
            self._finish(events)
        else:
            self._fail("upstream stream ended early", 500, events)
        return events

    # -- frames

    def _handle(self, name: bytes, data: bytes, events: list[Event]) -> None:
        data = data.strip()
        if data == b"[DONE]":
            if self._started:
                self._finish(events)
            else:
                self._fail("upstream stream ended early", 500, events)
            return
        if not data:
            return
        try:
            chunk = loads(data)
        except ValueError:
            if name == b"error":
                self._fail(data.decode("utf-8", "replace"), 500, events)
            return  # not JSON: nothing a chat client could use either
        if not isinstance(chunk, dict):
            return
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        usage = _decode_usage(usage) if usage is not None else None
        if name == b"error" or chunk.get("error"):
            message = error_message(chunk) or chunk.get("message")
            if not isinstance(message, str) or not message:
                message = "upstream error"
            self._fail(message, _error_status(chunk), events)
            return
        if not choices and usage is None:
            return  # e.g. Azure's leading prompt_filter_results chunk, which has no id or model yet
        if not self._started:
            self._started = True
            self._id = chunk.get("id") or ""
            events.append(Start(id=self._id, model=chunk.get("model") or "", created=chunk.get("created") or 0))
        if usage is not None:
            self._usage = usage
        if not choices:
            # The usage-only chunk (`choices: []`) comes after the finish chunk.
            if usage is not None and self._finish_reason is not None:
                self._finish(events)
            return
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)

    def _choice(self, choice: dict[str, Any], events: list[Event]) -> None:
        delta = choice.get("delta") or {}
        if len(delta) == 1 and "content" in delta:
            # A delta of text only, most of a stream: none of the other fields to look for.
            if isinstance(content := delta["content"], str) and content:
                self._text("text", content, events)
        else:
            self._fields(delta, events)
            if self._done:
                return
        if finish := choice.get("finish_reason"):
            self._finish_reason = finish
            self._close_block(events)

    def _fields(self, delta: dict[str, Any], events: list[Event]) -> None:
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")  # OpenRouter
        if isinstance(reasoning, str) and reasoning:
            self._text("thinking", reasoning, events)
        if isinstance(content := delta.get("content"), str) and content:
            self._text("text", content, events)
        if isinstance(refusal := delta.get("refusal"), str) and refusal:
            self._refused = True
            self._text("text", refusal, events)
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, dict):
                self._tool_fragment(fragment, events)
                if self._done:
                    return

    def _text(self, kind: str, text: str, events: list[Event]) -> None:
        if self._kind != kind:
            self._close_block(events)
            self._open(kind, events)
        events.append(Delta(self._block, text))  # positional: a third cheaper, per event

    def _tool_fragment(self, fragment: dict[str, Any], events: list[Event]) -> None:
        custom = fragment.get("custom")
        if isinstance(custom, dict):
            name, text = custom.get("name"), custom.get("input")
            arguments = custom_tools.escape(text) if isinstance(text, str) and text else None
        else:
            function = fragment.get("function") or {}
            name, arguments = function.get("name"), function.get("arguments")
        call_id = fragment.get("id")
        key = fragment.get("index")
        if not isinstance(key, int):
            key = self._key_without_index(call_id)
        call = self._calls.get(key)
        if call is None:
            self._close_block(events)
            call = self._calls[key] = _Call(key)
            call.custom = isinstance(custom, dict) or fragment.get("type") == "custom"
            self._call = call
        elif call is not self._call:
            if arguments:
                # Canonical blocks cannot interleave; better an error than a tool run with half its arguments.
                self._fail("upstream interleaved the arguments of parallel tool calls", 500, events)
            return
        if isinstance(call_id, str) and call_id and not call.id:
            call.id = call_id
        if isinstance(name, str) and name and not call.name:
            call.name = name
        if isinstance(arguments, str) and arguments:
            if call.block >= 0:
                events.append(Delta(call.block, arguments=arguments))
            else:
                call.pending.append(arguments)
        if call.block < 0 and call.name and (call.id or call.pending):
            self._start_call(call, events)

    def _key_without_index(self, call_id: Any) -> int:
        # Servers that omit `index`: a new id starts a new call, anything else continues the last one.
        if call_id:
            for call in self._calls.values():
                if call.id == call_id:
                    return call.key
        if call_id or self._call is None:
            return max(self._calls, default=-1) + 1
        return self._call.key

    def _start_call(self, call: _Call, events: list[Event]) -> None:
        call.block = self._next_block
        self._next_block += 1
        self._block, self._kind = call.block, "tool_call"
        self._tool_used = True
        call_id = call.id or f"call_{self._id}_{call.key}"
        events.append(BlockStart(call.block, "tool_call", id=call_id, name=call.name))
        if call.custom:
            events.append(Delta(call.block, arguments=custom_tools.OPEN))
        if call.pending:
            events.append(Delta(call.block, arguments="".join(call.pending)))
            call.pending.clear()

    def _open(self, kind: str, events: list[Event]) -> None:
        self._block, self._kind = self._next_block, kind
        self._next_block += 1
        events.append(BlockStart(self._block, kind))  # type: ignore[arg-type]

    def _close_block(self, events: list[Event]) -> None:
        if self._call is not None and self._call.block < 0:
            self._start_call(self._call, events)  # what arrived of it, even without a name
        if self._call is not None and self._call.custom and self._finish_reason != "length":
            events.append(Delta(self._call.block, arguments=custom_tools.CLOSE))
        self._call = None
        if self._kind is not None:
            events.append(BlockStop(self._block))
            self._kind = None
            self._block = -1

    def _finish(self, events: list[Event]) -> None:
        self._close_block(events)
        stop_reason = _stop_reason(self._finish_reason, self._tool_used)
        if self._refused and stop_reason is StopReason.END:
            stop_reason = StopReason.REFUSAL
        events.append(Finish(stop_reason, usage=self._usage))
        self._done = True

    def _fail(self, message: str, status: int, events: list[Event]) -> None:
        self._call = None  # an unstarted call is not worth starting now
        self._close_block(events)
        events.append(StreamError(message, status))
        self._done = True


def _error_status(chunk: dict[str, Any]) -> int:
    error = chunk.get("error")
    if isinstance(error, dict):
        for key in ("status", "code"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value <= 599:
                return value
    return 500


# -- streams: canonical -> chat ----------------------------------------------------------------

# The chunks of text, reasoning and tool arguments, most of a stream: templates around the string,
# written by the C string encoder. Keys in the order of `_chunk`'s.
_CONTENT = b'[{"index":0,"delta":{"content":'
_REASONING = b'[{"index":0,"delta":{"reasoning_content":'
_ARGUMENTS = b'[{"index":0,"delta":{"tool_calls":[{"index":%d,"function":{"arguments":'
_DELTA_END = b'},"logprobs":null,"finish_reason":null}]'
_ARGUMENTS_END = b"}}]" + _DELTA_END


class ChatStreamEncoder:
    """Canonical events in, `chat.completion.chunk` frames out, ending with `data: [DONE]`.

    Every chunk shares the id, created and model of the Start; their JSON prefix is built once.
    A mid-stream error is a `data: {"error": {...}}` frame (the SDK raises on it) followed by
    `[DONE]`, so that clients waiting for the terminator stop too.
    """

    def __init__(self, request: Request, sse: bool = True) -> None:
        # Chat streams are always SSE; `sse` only matters to Gemini.
        self._usage_wanted = request.stream_usage
        self._prefix = b""
        self._suffix = b',"usage":null}\n\n' if request.stream_usage else b"}\n\n"
        self._delta_end = _DELTA_END + self._suffix
        self._arguments_end = _ARGUMENTS_END + self._suffix
        self._content = self._reasoning = self._arguments = b""  # templates, once started
        self._started = False
        self._done = False
        self._kind: str | None = None  # kind of the open block
        self._tool_index = -1  # chat index of the open tool call
        self._tool_calls = 0
        self._custom = custom_tools.names(request)
        self._reader: custom_tools.InputReader | None = None  # the open custom call's input

    def encode(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, StreamError):
            return self._error(event.message, event.status)
        out = b""
        if not self._started:
            start = event if isinstance(event, Start) else Start(id="", model="")
            out = self._start(start)
            if isinstance(event, Start):
                return out
        if isinstance(event, Delta):
            return out + self._delta(event)
        if isinstance(event, BlockStart):
            self._kind = event.kind
            if event.kind != "tool_call":
                return out
            self._tool_index = self._tool_calls
            self._tool_calls += 1
            self._arguments = self._prefix + _ARGUMENTS % self._tool_index
            name = event.name or ""
            if name in self._custom:
                self._reader = custom_tools.InputReader()
                header = {
                    "index": self._tool_index,
                    "id": event.id or "",
                    "type": "custom",
                    "custom": {"name": name, "input": ""},
                }
            else:
                header = {
                    "index": self._tool_index,
                    "id": event.id or "",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            return out + self._chunk({"tool_calls": [header]})
        if isinstance(event, BlockStop):
            self._kind = None
            if self._reader is not None:
                out += self._custom_input(self._reader.finish())
                self._reader = None
            return out
        if isinstance(event, Finish):
            return out + self._finish(event)
        return out

    def close(self) -> bytes:
        if self._done:
            return b""
        return self._error("upstream stream ended early", 502)

    def _start(self, start: Start) -> bytes:
        self._started = True
        created = start.created or int(time.time())
        self._prefix = (
            f'data: {{"id":{_dumps(start.id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{_dumps(start.model)},"choices":'
        ).encode()
        self._content = self._prefix + _CONTENT
        self._reasoning = self._prefix + _REASONING
        return self._chunk({"role": "assistant", "content": ""})

    def _delta(self, delta: Delta) -> bytes:
        kind = self._kind
        if kind == "text" and delta.text:
            return self._content + json_string(delta.text) + self._delta_end
        if kind == "thinking" and delta.text:
            return self._reasoning + json_string(delta.text) + self._delta_end
        if kind == "tool_call" and delta.arguments:
            if self._reader is not None:
                return self._custom_input(self._reader.feed(delta.arguments))
            return self._arguments + json_string(delta.arguments) + self._arguments_end
        return b""  # signatures have no place in chat

    def _custom_input(self, text: str) -> bytes:
        if not text:
            return b""
        return self._chunk({"tool_calls": [{"index": self._tool_index, "custom": {"input": text}}]})

    def _finish(self, finish: Finish) -> bytes:
        self._done = True
        out = b""
        if self._reader is not None:  # a custom call cut off without its BlockStop
            out = self._custom_input(self._reader.finish())
            self._reader = None
        reason = _finish_reason(finish.stop_reason, self._tool_calls > 0)
        out += self._chunk({}, reason)
        if self._usage_wanted:
            usage = _dumps(_encode_usage(finish.usage or Usage())).encode()
            out += self._prefix + b'[],"usage":' + usage + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def _error(self, message: str, status: int) -> bytes:
        self._done = True
        return b"data: " + error_body(Format.OPENAI_CHAT, status, message) + b"\n\ndata: [DONE]\n\n"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._prefix + b"[" + _dumps(choice).encode() + b"]" + self._suffix


# -- errors ----------------------------------------------------------------------------------


def error_message(parsed: Any) -> str | None:
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, str) and error:
        return error
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
        if isinstance(code := error.get("code") or error.get("type"), str) and code:
            return code
    return None


CODEC = Codec(
    format=Format.OPENAI_CHAT,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=ChatStreamDecoder,
    stream_encoder=ChatStreamEncoder,
    error_message=error_message,
)
