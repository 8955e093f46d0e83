"""Gemini `generateContent` in and out of the canonical model, and the Code Assist envelope.

Gemini CLI's Code Assist API (`cloudcode-pa.googleapis.com/v1internal`) carries the same bodies
inside an envelope: requests as `{model, project, request: <body>}` and responses (and each
stream chunk) as `{response: <body>, traceId}`. `wrap_code_assist` / `unwrap_code_assist` handle
it; every decoder here also accepts the wrapped shapes transparently.

Things Gemini does differently from everyone else, and how this module copes:
- Function calls usually come without ids and results are paired with calls by name and order.
  Decoders synthesize ids; the request encoder sends none, because the Gemini API rejects `id`
  on `functionCall` / `functionResponse` ("Unknown name "id" ... Cannot find field") on some
  endpoints. Results are paired by name and order instead, so they are ordered like the calls.
- Thought signatures ride on any part. A signature on a non-thought part becomes a signature of
  a (possibly empty) `Thinking` just before it; on a `functionCall` part it is the
  `ToolCall.signature`. Gemini 3 requires a signature on function calls in the history; calls
  that did not come from Gemini get Google's documented placeholder.
- Tool schemas go out as `parameters`, reduced to the OpenAPI subset Gemini accepts (see
  `clean_schema`).
- The REST parser accepts snake_case as well as camelCase (the google-genai SDK itself sends
  `thinking_budget`, `parameters_json_schema`), so decoders read both; encoders write camelCase.
- Streams have no terminator: the last chunk carries `finishReason` and `usageMetadata`, then
  the connection ends.
- A `functionCall` is always whole and clients run it: a call the token limit cut off (another
  format's upstream) is not sent; finishReason MAX_TOKENS says the answer was cut. The stream
  encoder therefore sends a call at the event after its end.
- A Code Assist answer's `traceId` is its responseId, as Gemini CLI's converter reads it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from typing import Any, Literal

from translators import reasoning as reasoning_table
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
from translators.jsonutil import compact, json_string
from translators.errors import error_body
from translators.formats import Format
from translators.sse import SSEReader, loads

__all__ = [
    "CODEC",
    "SKIP_SIGNATURE",
    "clean_schema",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "error_message",
    "stream_decoder",
    "stream_encoder",
    "unwrap_code_assist",
    "wrap_code_assist",
]

GEMINI = Format.GEMINI.value

# Google's documented stand-in for a thought signature on history that did not come from Gemini.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_JSON_MIME = "application/json"


# -- Code Assist envelope ------------------------------------------------------------------


def wrap_code_assist(body: dict[str, Any], model: str, project: str) -> dict[str, Any]:
    """A Gemini REST body as a Code Assist `:generateContent` / `:streamGenerateContent` body."""
    return {"model": model.removeprefix("models/"), "project": project, "request": body}


def unwrap_code_assist(obj: dict[str, Any]) -> dict[str, Any]:
    """The Gemini response inside a Code Assist response or chunk; other objects as they are."""
    inner = obj.get("response")
    return inner if isinstance(inner, dict) else obj


# -- field access --------------------------------------------------------------------------

_SNAKE: dict[str, str] = {}


def _snake(name: str) -> str:
    snake = _SNAKE.get(name)
    if snake is None:
        snake = _SNAKE[name] = re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
    return snake


def _get(obj: dict[str, Any], key: str) -> Any:
    """`obj[key]` under its camelCase or snake_case spelling, None if absent."""
    value = obj.get(key)
    if value is None:
        value = obj.get(_SNAKE.get(key) or _snake(key))
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    # int64 fields may arrive as JSON strings (protobuf JSON mapping)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


_dumps = compact


def _bare_model(model: str) -> str:
    return model.removeprefix("models/")


# -- tool-call ids -------------------------------------------------------------------------


class _CallIds:
    """Ids for calls that came without one, and the same ids for their results.

    A call gets `call_<name>_<n>` (n counts calls and orphan results in the conversation, so
    ids stay the same when the conversation is sent again with more turns); a result without id
    takes the oldest unanswered call of the same name.
    """

    __slots__ = ("_n", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}
        self._n = 0

    def call(self, name: str, given: Any) -> str:
        call_id = given if isinstance(given, str) and given else f"call_{name}_{self._n}"
        self._n += 1
        self._pending.setdefault(name, []).append(call_id)
        return call_id

    def result(self, name: str, given: Any) -> str:
        pending = self._pending.get(name)
        if isinstance(given, str) and given:
            if pending and given in pending:
                pending.remove(given)
            return given
        if pending:
            return pending.pop(0)
        call_id = f"call_{name}_{self._n}"
        self._n += 1
        return call_id


def _response_tag(response_id: str) -> str:
    # Ids in responses must not repeat across turns (Anthropic rejects duplicate tool_use ids in
    # a conversation), so they carry a short digest of the response id, or a random one.
    if response_id:
        return hashlib.sha1(response_id.encode()).hexdigest()[:8]
    return uuid.uuid4().hex[:8]


# -- decoding parts ------------------------------------------------------------------------


def _decode_blob_image(part: dict[str, Any]) -> Image | None:
    inline = _get(part, "inlineData")
    if isinstance(inline, dict):
        return Image(media_type=_get(inline, "mimeType") or "", data=inline.get("data") or "")
    file = _get(part, "fileData")
    if isinstance(file, dict):
        return Image(media_type=_get(file, "mimeType") or "", url=_get(file, "fileUri") or "")
    return None


def _decode_function_response(fr: dict[str, Any], ids: _CallIds) -> ToolResult:
    name = fr.get("name") or ""
    call_id = ids.result(name, fr.get("id"))
    response = fr.get("response")
    is_error = False
    value: Any = response
    # The usual wrappers around a plain result; anything else is passed on as its JSON.
    if isinstance(response, dict) and len(response) == 1:
        key, inner = next(iter(response.items()))
        if key in ("result", "output", "content"):
            value = inner
        elif key == "error":
            value, is_error = inner, True
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = _dumps(value)
    content: list[Text | Image] = [Text(text)] if text else []
    for extra in _list(fr.get("parts")):
        if isinstance(extra, dict) and (image := _decode_blob_image(extra)) is not None:
            content.append(image)
    return ToolResult(call_id=call_id, content=content, is_error=is_error, name=name or None)


def _decode_parts(raw_parts: Iterable[Any], ids: _CallIds, *, model: bool) -> list[Part]:
    parts: list[Part] = []
    for raw in raw_parts:
        if not isinstance(raw, dict):
            continue
        signature = _get(raw, "thoughtSignature") or None
        call = _get(raw, "functionCall")
        if isinstance(call, dict):
            name = call.get("name") or ""
            args = call.get("args")
            parts.append(
                ToolCall(
                    id=ids.call(name, call.get("id")),
                    name=name,
                    arguments=args if isinstance(args, dict) else {},
                    signature=signature,
                    origin=GEMINI,
                )
            )
            continue
        response = _get(raw, "functionResponse")
        if isinstance(response, dict):
            parts.append(_decode_function_response(response, ids))
            continue
        if (image := _decode_blob_image(raw)) is not None:
            parts.append(image)
            continue
        text = raw.get("text")
        if not isinstance(text, str):
            continue  # executableCode, codeExecutionResult, videoMetadata...: no equivalent
        if model and raw.get("thought"):
            if text or signature:
                parts.append(Thinking(text=text, signature=signature, origin=GEMINI))
            continue
        if model and signature:
            previous = parts[-1] if parts else None
            if isinstance(previous, Thinking) and previous.signature is None:
                previous.signature = signature  # the part that closes a run of thoughts
            else:
                parts.append(Thinking(text="", signature=signature, origin=GEMINI))
        if text:
            parts.append(Text(text))
    return parts


# -- schemas -------------------------------------------------------------------------------


_OPENAPI_ONLY = frozenset({"nullable", "propertyOrdering", "property_ordering"})


def _openapi_to_json_schema(node: Any) -> Any:
    """A Gemini `Schema` (OpenAPI subset: `type: "OBJECT"`, `nullable`) as plain JSON Schema."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _openapi_to_json_schema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = _openapi_to_json_schema(value)
        elif key in ("anyOf", "any_of") and isinstance(value, list):
            out["anyOf"] = [_openapi_to_json_schema(v) for v in value]
        elif key in _OPENAPI_ONLY or (key == "format" and value == "enum"):
            continue  # folded into `type` above, or meaningless in JSON Schema
        else:
            out[key] = value
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


# What Gemini's `parameters` Schema accepts and this module keeps. Everything else ($schema, $id,
# additionalProperties, patternProperties, propertyNames, const, default, examples, title,
# exclusiveMinimum/Maximum, multipleOf, uniqueItems, not, if/then/else, pattern...) is either
# rejected with "Unknown name" or not honoured, so it is dropped.
_STRING_FORMATS = frozenset({"enum", "date-time"})
_NUMBER_FORMATS = frozenset({"float", "double"})
_INTEGER_FORMATS = frozenset({"int32", "int64"})
_COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_TYPE_KEYS = frozenset({"properties", "required", "items", "enum", "const"})


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema reduced to what Gemini's `parameters` accepts, keeping its meaning.

    `$ref` is inlined from anywhere in the document (a recursive reference becomes a plain
    object), `allOf` is merged, `oneOf` becomes `anyOf`, `type: [T, "null"]` and null
    alternatives become `nullable`, `const` becomes a one-value `enum`, and enums are string
    enums (Gemini only takes strings there). Every node gets a type, since Gemini rejects
    untyped ones: inferred from its keywords, else "string".
    """
    return _clean(schema, schema, ())


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for token in ref[1:].split("/")[1:] if ref != "#" else ():
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return None
        node = node[token]
    return node if isinstance(node, dict) else None


def _merge_all_of(node: dict[str, Any], root: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for member in _list(node.get("allOf")):
        if not isinstance(member, dict):
            continue
        ref = member.get("$ref")
        if isinstance(ref, str):
            if ref in refs:
                continue
            member = _resolve_ref(root, ref) or {}
        if "allOf" in member:
            member = _merge_all_of(member, root, refs)
        for key, value in member.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**_dict(merged.get("properties")), **value}
            elif key == "required" and isinstance(value, list):
                existing = _list(merged.get("required"))
                merged["required"] = existing + [r for r in value if r not in existing]
            else:
                merged.setdefault(key, value)
    return merged


def _enum_value(value: Any) -> str:
    return value if isinstance(value, str) else _dumps(value)


def _clean(node: Any, root: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {"type": "string"}  # `true` / `{}`-like "anything" schemas
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = None if ref in refs else _resolve_ref(root, ref)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if target is None:
            # Recursive or unresolvable: an object the model fills as it sees fit.
            out: dict[str, Any] = {"type": "object"}
            if isinstance(siblings.get("description"), str):
                out["description"] = siblings["description"]
            return out
        return _clean({**target, **siblings}, root, (*refs, ref))
    if "allOf" in node:
        node = _merge_all_of(node, root, refs)

    out = {}
    nullable = node.get("nullable") is True
    variants: list[dict[str, Any]] = []

    kind = node.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if isinstance(t, str) and t != "null"]
        nullable = nullable or "null" in kind
        if len(types) > 1:
            rest = {k: v for k, v in node.items() if k not in ("type", "description", "nullable")}
            variants = [_clean({**rest, "type": t}, root, refs) for t in types]
            kind = None
        else:
            kind = types[0] if types else None
    if kind == "null":
        kind, nullable = None, True
    elif not isinstance(kind, str):
        kind = None

    alternatives = node.get("anyOf") if "anyOf" in node else node.get("oneOf")
    for alternative in _list(alternatives):
        if isinstance(alternative, dict) and alternative.get("type") == "null" and len(alternative) == 1:
            nullable = True
        else:
            variants.append(_clean(alternative, root, refs))

    enum = node.get("enum")
    if not isinstance(enum, list) and "const" in node:
        enum = [node["const"]]
    if isinstance(enum, list):
        if None in enum:
            nullable = True
        out["enum"] = [_enum_value(v) for v in enum if v is not None]
        kind = "string"

    if len(variants) == 1 and not kind:
        # A single alternative left (typically `anyOf: [X, {type: null}]`): it is the schema.
        single = variants.pop()
        if isinstance(node.get("description"), str):
            single["description"] = node["description"]
        if nullable:
            single["nullable"] = True
        return single

    if not kind and not variants:
        if "properties" in node:
            kind = "object"
        elif "items" in node:
            kind = "array"
        else:
            kind = "string"
    if kind:
        out = {"type": kind, **out}
    if variants:
        out["anyOf"] = variants
    if isinstance(node.get("description"), str):
        out["description"] = node["description"]
    if nullable:
        out["nullable"] = True

    fmt = node.get("format")
    lowered = kind.lower() if isinstance(kind, str) else ""
    if isinstance(fmt, str) and (
        (lowered == "string" and fmt in _STRING_FORMATS)
        or (lowered == "number" and fmt in _NUMBER_FORMATS)
        or (lowered == "integer" and fmt in _INTEGER_FORMATS)
    ):
        out["format"] = fmt

    properties = node.get("properties")
    if lowered == "object" and isinstance(properties, dict) and properties:
        out["properties"] = {name: _clean(sub, root, refs) for name, sub in properties.items()}
        required = [r for r in _list(node.get("required")) if r in properties]
        if required:
            out["required"] = required
        ordering = [p for p in _list(node.get("propertyOrdering")) if p in properties]
        if ordering:
            out["propertyOrdering"] = ordering
    if lowered == "array":
        items = node.get("items")
        if isinstance(items, list):  # tuple validation: the first position is the best guess
            items = items[0] if items else None
        out["items"] = _clean(items, root, refs) if isinstance(items, dict) else {"type": "string"}
    for key in _COUNT_KEYS:
        value = node.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value
    if lowered in ("number", "integer"):
        for key in ("minimum", "maximum"):
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = value
    return out


def _tool_parameters(schema: dict[str, Any]) -> dict[str, Any] | None:
    if not schema:
        return None
    cleaned = clean_schema(schema)
    # Gemini rejects an OBJECT with no properties ("should be non-empty for OBJECT type"); a
    # tool without parameters simply has no `parameters`.
    if str(cleaned.get("type", "")).lower() == "object" and not cleaned.get("properties"):
        return None
    return cleaned


# -- requests ------------------------------------------------------------------------------


def _spelled(obj: dict[str, Any], key: str) -> str:
    """The spelling (camelCase or snake_case) under which `obj` holds `key`."""
    return key if obj.get(key) is not None else _snake(key)


def _typed_get(obj: dict[str, Any], key: str, read) -> Any:
    return read(obj, _spelled(obj, key))


def _gemini_int(obj: dict[str, Any], key: str) -> int | None:
    """An int32 / int64 field: a number, or a string of digits (protobuf's JSON mapping)."""
    key = _spelled(obj, key)
    value = obj.get(key)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise wrong_type(value, "an integer", key) from None
    return get_int(obj, key)


def _check_blob(part: dict[str, Any]) -> None:
    for field, location in (("inlineData", "data"), ("fileData", "fileUri")):
        if (blob := _typed_get(part, field, get_dict_or_none)) is not None:
            try:
                _typed_get(blob, "mimeType", get_str)
                _typed_get(blob, location, get_str)
            except FieldError as e:
                raise e.within(_spelled(part, field))


def _check_request_part(part: dict[str, Any]) -> None:
    """The fields `_decode_parts` reads, each of its type (the decoder itself, shared with
    upstream answers, skips what it cannot read)."""
    _typed_get(part, "thoughtSignature", get_str)
    get_str(part, "text")
    get_bool(part, "thought")
    if (call := _typed_get(part, "functionCall", get_dict_or_none)) is not None:
        try:
            get_str(call, "name")
            get_str(call, "id")
            get_dict_or_none(call, "args")
        except FieldError as e:
            raise e.within(_spelled(part, "functionCall"))
    if (response := _typed_get(part, "functionResponse", get_dict_or_none)) is not None:
        try:
            get_str(response, "name")
            get_str(response, "id")
            for index, extra in dicts(get_list(response, "parts"), "parts"):
                try:
                    _check_blob(extra)
                except FieldError as e:
                    raise e.within("parts", index)
        except FieldError as e:
            raise e.within(_spelled(part, "functionResponse"))
    _check_blob(part)


def _request_parts(content: dict[str, Any]) -> list[Any]:
    raw_parts = get_list(content, "parts")
    for index, part in dicts(raw_parts, "parts"):
        try:
            _check_request_part(part)
        except FieldError as e:
            raise e.within("parts", index)
    return raw_parts


def decode_request(body: dict[str, Any]) -> Request:
    model = body.get("model")
    if isinstance(body.get("request"), dict) and "contents" not in body:
        body = body["request"]  # Code Assist envelope
        model = model or body.get("model")
    if "contents" not in body and isinstance(inner := _get(body, "generateContentRequest"), dict):
        body = inner  # countTokens: `{generateContentRequest: {model, contents, ...}}`
        model = model or body.get("model")
    request = Request(model=_bare_model(model) if isinstance(model, str) else "")

    system_key = _spelled(body, "systemInstruction")
    system = body.get(system_key)
    if isinstance(system, str):
        system = {"parts": [{"text": system}]}
    elif system is not None and not isinstance(system, dict):
        raise wrong_type(system, "a string or a content object", system_key)
    with at(system_key):
        for index, part in dicts(get_list(system or {}, "parts"), "parts"):
            try:
                if text := get_str(part, "text"):
                    request.system.append(Text(text))
            except FieldError as e:
                raise e.within("parts", index)

    ids = _CallIds()
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    elif contents is not None and not isinstance(contents, list):
        raise wrong_type(contents, "a list of contents", "contents")
    for index, content in dicts(contents or [], "contents"):
        try:
            role = get_str(content, "role")
            if role not in (None, "", "user", "model", "function", "tool"):
                raise FieldError(f"expected role 'user' or 'model', got {shown(role)}", "role")
            raw_parts = _request_parts(content)  # objects only, each field of its type
        except FieldError as e:
            raise e.within("contents", index)
        if not role:
            # Role is optional ("user" then); a content of calls or thoughts can only be the model's.
            role = "model" if any(_get(p, "functionCall") or p.get("thought") for p in raw_parts) else "user"
        model_turn = role == "model"
        parts = _decode_parts(raw_parts, ids, model=model_turn)
        if model_turn:
            parts = [p for p in parts if not isinstance(p, ToolResult)]
        else:
            parts = [p for p in parts if not isinstance(p, (ToolCall, Thinking))]
        if parts:
            request.messages.append(Message(role="assistant" if model_turn else "user", parts=parts))

    for index, tool in dicts(get_list(body, "tools"), "tools"):
        try:
            key = _spelled(tool, "functionDeclarations")
            for position, declaration in dicts(get_list(tool, key), key):
                try:
                    if not (name := get_str(declaration, "name")):
                        continue
                    schema = _typed_get(declaration, "parametersJsonSchema", get_dict_or_none)
                    if schema is None:
                        schema = _openapi_to_json_schema(get_dict(declaration, "parameters"))
                    request.tools.append(
                        Tool(name=name, description=get_str(declaration, "description") or "", parameters=schema)
                    )
                except FieldError as e:
                    raise e.within(key, position)
        except FieldError as e:
            raise e.within("tools", index)
        # googleSearch, codeExecution, urlContext...: server-side tools with no equivalent.

    tool_config_key = _spelled(body, "toolConfig")
    tool_config = get_dict(body, tool_config_key)
    with at(tool_config_key):
        calling_key = _spelled(tool_config, "functionCallingConfig")
        calling = get_dict(tool_config, calling_key)
        with at(calling_key):
            mode = (get_str(calling, "mode") or "").upper()
            allowed = _typed_get(calling, "allowedFunctionNames", get_stop)
    if mode in ("AUTO", "VALIDATED"):
        request.tool_choice = ToolChoice(mode="auto")
    elif mode == "NONE":
        request.tool_choice = ToolChoice(mode="none")
    elif mode == "ANY":
        if len(allowed) == 1:
            request.tool_choice = ToolChoice(mode="tool", name=allowed[0])
        else:
            request.tool_choice = ToolChoice(mode="any")

    config_key = _spelled(body, "generationConfig")
    config = get_dict(body, config_key)
    with at(config_key):
        request.max_tokens = _gemini_int(config, "maxOutputTokens")
        request.temperature = get_number(config, "temperature")
        request.top_p = _typed_get(config, "topP", get_number)
        request.top_k = _gemini_int(config, "topK")
        request.stop = _typed_get(config, "stopSequences", get_stop)
        request.n = _gemini_int(config, "candidateCount")
        request.response_format = _decode_response_format(config)
        thinking_key = _spelled(config, "thinkingConfig")
        thinking = get_dict(config, thinking_key)
        with at(thinking_key):
            request.reasoning = _decode_thinking(thinking)
    return request


def _decode_response_format(config: dict[str, Any]) -> ResponseFormat | None:
    if _typed_get(config, "responseMimeType", get_str) != _JSON_MIME:
        return None
    schema = _typed_get(config, "responseJsonSchema", get_dict_or_none)
    if schema is None:
        openapi = _typed_get(config, "responseSchema", get_dict_or_none)
        schema = _openapi_to_json_schema(openapi) if openapi is not None else None
    if schema is None:
        return ResponseFormat(type="json_object")
    return ResponseFormat(type="json_schema", schema=schema)


def _decode_thinking(config: dict[str, Any]) -> Reasoning | None:
    if not config:
        return None
    level = _typed_get(config, "thinkingLevel", get_str)
    budget = _gemini_int(config, "thinkingBudget")
    effort = None
    if level and level.upper() != "THINKING_LEVEL_UNSPECIFIED":
        effort = level.lower()
    if effort is None and budget is None:
        # Only asked to see the thoughts: the model's default, dynamic thinking.
        return Reasoning(budget=-1) if _typed_get(config, "includeThoughts", get_bool) else None
    return Reasoning(effort=effort, budget=budget)


def _image_part(image: Image) -> dict[str, Any] | None:
    if image.data:
        return {
            "inlineData": {"mimeType": image.media_type or "application/octet-stream", "data": image.data}
        }
    url = image.url or ""
    if not url:
        return None
    if match := _DATA_URL.match(url):
        return {"inlineData": {"mimeType": match.group(1), "data": match.group(3)}}
    # Gemini fetches gs://, File API and some public URLs itself; the proxy does not download.
    file: dict[str, Any] = {"fileUri": url}
    if mime := image.media_type or _guess_mime(url):
        file["mimeType"] = mime
    return {"fileData": file}


_DATA_URL = re.compile(r"^data:([^;,]+)(;[^,]*)?;base64,(.*)$", re.DOTALL)
_EXTENSION_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}


def _guess_mime(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    return _EXTENSION_MIME.get(path.rsplit(".", 1)[-1].lower(), "") if "." in path else ""


def _result_payload(result: ToolResult) -> dict[str, Any]:
    text = "\n".join(p.text for p in result.content if isinstance(p, Text))
    return {"error": text} if result.is_error else {"result": text}


def _call_part(call: ToolCall, *, with_id: bool, placeholder: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "args": call.arguments}
    if with_id and call.id:
        function["id"] = call.id
    part: dict[str, Any] = {"functionCall": function}
    if call.origin == GEMINI:
        if call.signature:
            part["thoughtSignature"] = call.signature
    elif placeholder:
        part["thoughtSignature"] = SKIP_SIGNATURE
    return part


def _model_parts(
    parts: Iterable[Part], *, with_ids: bool, placeholder: bool, foreign_thoughts: bool
) -> list[dict[str, Any]]:
    """Parts of a `model` content.

    `foreign_thoughts`: keep the text of thinking that did not come from Gemini (true for a
    response shown to a client, false for history sent to Gemini, which has no use for it).
    """
    out: list[dict[str, Any]] = []
    pending: str | None = None  # a signature waiting for the text part it belongs to
    for part in parts:
        if isinstance(part, Thinking):
            ours = part.origin == GEMINI and not part.redacted
            signature = part.signature if ours else None
            if part.redacted or not (ours or foreign_thoughts):
                continue
            if pending:
                out.append({"text": "", "thoughtSignature": pending})
                pending = None
            if part.text:
                thought: dict[str, Any] = {"text": part.text, "thought": True}
                if signature:
                    thought["thoughtSignature"] = signature
                out.append(thought)
            elif signature:
                pending = signature
            continue
        if isinstance(part, Text):
            if not part.text:
                continue
            item: dict[str, Any] = {"text": part.text}
            if pending:
                item["thoughtSignature"] = pending
                pending = None
            out.append(item)
            continue
        if pending:
            out.append({"text": "", "thoughtSignature": pending})
            pending = None
        if isinstance(part, ToolCall):
            out.append(_call_part(part, with_id=with_ids, placeholder=placeholder))
        elif isinstance(part, Image) and (image := _image_part(part)) is not None:
            out.append(image)
    if pending:
        out.append({"text": "", "thoughtSignature": pending})
    return out


class _Content:
    __slots__ = ("parts", "responses", "role")

    def __init__(self, role: str) -> None:
        self.role = role
        self.responses: list[tuple[int, dict[str, Any]]] = []  # (call position, part)
        self.parts: list[dict[str, Any]] = []

    def render(self) -> dict[str, Any]:
        # Results first and in the order of their calls: Gemini pairs them by name and order.
        ordered = [part for _, part in sorted(self.responses, key=lambda r: r[0])]
        return {"role": self.role, "parts": ordered + self.parts}


def encode_request(request: Request) -> dict[str, Any]:
    if request.n is not None and request.n > 1:
        raise ValueError(f"n={request.n}: only one candidate can be translated to Gemini; ask for n=1")
    gemini3 = _bare_model(request.model).startswith("gemini-3")
    names = {
        part.id: part.name
        for message in request.messages
        for part in message.parts
        if isinstance(part, ToolCall)
    }

    contents: list[_Content] = []
    call_order: dict[str, int] = {}  # call id -> position in the latest model content
    for message in request.messages:
        if message.role == "assistant":
            parts = _model_parts(message.parts, with_ids=False, placeholder=gemini3, foreign_thoughts=False)
            if not parts:
                continue
            if not contents or contents[-1].role != "model":
                contents.append(_Content("model"))
                call_order = {}
            contents[-1].parts.extend(parts)
            for part in message.parts:
                if isinstance(part, ToolCall):
                    call_order.setdefault(part.id, len(call_order))
            continue
        responses: list[tuple[int, dict[str, Any]]] = []
        others: list[dict[str, Any]] = []
        extras: list[dict[str, Any]] = []  # images returned by tools, after the results
        for part in message.parts:
            if isinstance(part, Text):
                if part.text:
                    others.append({"text": part.text})
            elif isinstance(part, Image):
                if (image := _image_part(part)) is not None:
                    others.append(image)
            elif isinstance(part, ToolResult):
                name = names.get(part.call_id) or part.name or part.call_id
                response = {"name": name, "response": _result_payload(part)}
                position = call_order.get(part.call_id, len(call_order) + len(responses))
                responses.append((position, {"functionResponse": response}))
                for item in part.content:
                    if isinstance(item, Image) and (image := _image_part(item)) is not None:
                        extras.append(image)
        if not (responses or others or extras):
            continue
        if not contents or contents[-1].role != "user":
            contents.append(_Content("user"))
        contents[-1].responses.extend(responses)
        contents[-1].parts.extend(extras + others)

    body: dict[str, Any] = {"contents": [c.render() for c in contents]}
    system = [{"text": t.text} for t in request.system if t.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        declarations = []
        for tool in request.tools:
            declaration: dict[str, Any] = {"name": tool.name}
            if description := custom_tools.function_description(tool) if tool.custom else tool.description:
                declaration["description"] = description
            if (parameters := _tool_parameters(tool.parameters)) is not None:
                declaration["parameters"] = parameters
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        if (tool_config := _tool_config(request.tool_choice)) is not None:
            body["toolConfig"] = tool_config
    if config := _generation_config(request, gemini3):
        body["generationConfig"] = config
    return body


def _tool_config(choice: ToolChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice.mode == "tool" and choice.name:
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}
    mode = {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")
    return {"functionCallingConfig": {"mode": mode}}


def _generation_config(request: Request, gemini3: bool) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = _JSON_MIME
        if fmt.type == "json_schema" and fmt.schema:
            config["responseJsonSchema"] = fmt.schema
    if request.reasoning is not None and (thinking := _thinking_config(request.reasoning, gemini3)):
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(reasoning: Reasoning, gemini3: bool) -> dict[str, Any]:
    budget = reasoning_table.budget_of(reasoning)
    thinking: dict[str, Any] = {}
    if gemini3:
        effort = reasoning_table.effort_of(reasoning)
        if effort is not None and (level := reasoning_table.GEMINI_LEVELS.get(effort)):
            thinking["thinkingLevel"] = level
    elif budget is not None:
        thinking["thinkingBudget"] = budget
    if budget is not None and budget != 0:
        thinking["includeThoughts"] = True
    return thinking


# -- responses -----------------------------------------------------------------------------

_REFUSALS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

_FINISH_REASONS = {
    StopReason.END: "STOP",
    StopReason.TOOL_USE: "STOP",  # Gemini has no tool-call finish reason
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.REFUSAL: "SAFETY",
    StopReason.ERROR: "OTHER",
}


def _stop_reason(finish: str | None, blocked: bool, called: bool) -> StopReason:
    if blocked or finish in _REFUSALS:
        return StopReason.REFUSAL
    if finish is None or finish == "STOP":
        return StopReason.TOOL_USE if called else StopReason.END
    if finish == "MAX_TOKENS":
        return StopReason.MAX_TOKENS
    return StopReason.ERROR


def _decode_usage(meta: dict[str, Any]) -> Usage:
    thoughts = _int(_get(meta, "thoughtsTokenCount"))
    return Usage(
        input_tokens=_int(_get(meta, "promptTokenCount")) + _int(_get(meta, "toolUsePromptTokenCount")),
        output_tokens=_int(_get(meta, "candidatesTokenCount")) + thoughts,
        cached_tokens=_int(_get(meta, "cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _has_counts(meta: dict[str, Any]) -> bool:
    return any(
        _get(meta, key) is not None for key in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount")
    )


def _encode_usage(usage: Usage) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(0, usage.output_tokens - usage.reasoning_tokens),
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
    }
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def _block_reason(obj: dict[str, Any]) -> str | None:
    reason = _get(_dict(_get(obj, "promptFeedback")), "blockReason")
    return reason if isinstance(reason, str) and reason != "BLOCK_REASON_UNSPECIFIED" else None


class _ResponseIds(_CallIds):
    """Response call ids: unique across turns, since each response's ids carry its tag."""

    __slots__ = ("_tag",)

    def __init__(self, response_id: str) -> None:
        super().__init__()
        self._tag = _response_tag(response_id)

    def call(self, name: str, given: Any) -> str:
        if isinstance(given, str) and given:
            return given
        call_id = f"call_{self._tag}_{self._n}"
        self._n += 1
        return call_id


def decode_response(obj: dict[str, Any]) -> Response:
    trace = obj.get("traceId")
    obj = unwrap_code_assist(obj)
    # Gemini CLI's converter takes a Code Assist answer's responseId from its traceId.
    response_id = (trace if isinstance(trace, str) else "") or obj.get("responseId") or ""
    candidates = _list(obj.get("candidates"))
    candidate = _dict(candidates[0]) if candidates else {}
    raw_parts = _list(_dict(candidate.get("content")).get("parts"))
    parts = [
        p
        for p in _decode_parts(raw_parts, _ResponseIds(response_id), model=True)
        if isinstance(p, (Text, Thinking, ToolCall))
    ]
    finish = _get(candidate, "finishReason")
    called = any(isinstance(p, ToolCall) for p in parts)
    return Response(
        id=response_id,
        model=_bare_model(obj.get("modelVersion") or ""),
        parts=parts,
        stop_reason=_stop_reason(finish, _block_reason(obj) is not None, called),
        usage=_decode_usage(_dict(_get(obj, "usageMetadata"))),
    )


def encode_response(response: Response) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    shown = response.parts
    if isinstance(cut_off(response), ToolCall):
        # A Gemini functionCall is whole, and a client runs it: one the token limit cut is not
        # sent; finishReason MAX_TOKENS says the answer was cut.
        shown = shown[:-1]
    parts = _model_parts(shown, with_ids=True, placeholder=False, foreign_thoughts=True)
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    candidate["finishReason"] = _FINISH_REASONS[response.stop_reason]
    candidate["index"] = 0
    body: dict[str, Any] = {"candidates": [candidate], "usageMetadata": _encode_usage(response.usage)}
    if response.model:
        body["modelVersion"] = response.model
    if response.id:
        body["responseId"] = response.id
    return body


def error_message(parsed: Any) -> str | None:
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]  # the non-SSE stream endpoint wraps its error in an array
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("status")
        return message if isinstance(message, str) and message else None
    if isinstance(error, str) and error:
        return error
    return None


# -- streams -------------------------------------------------------------------------------


class GeminiStreamDecoder:
    """Gemini `alt=sse` chunks (plain or in the Code Assist envelope) into canonical events."""

    __slots__ = (
        "_blocked",
        "_called",
        "_done",
        "_finish",
        "_ids",
        "_kind",
        "_next",
        "_open",
        "_reader",
        "_signed",
        "_started",
        "_usage",
        "_usage_seen",
    )

    def __init__(self) -> None:
        self._reader = SSEReader()
        self._started = False
        self._open: int | None = None
        self._kind = ""
        self._next = 0
        self._ids: _ResponseIds | None = None
        self._called = False
        self._finish: str | None = None
        self._blocked = False
        self._usage: Usage | None = None
        self._usage_seen: dict[str, Any] | None = None  # the usageMetadata `_usage` was read from
        self._done = False
        self._signed = False  # the open thinking block has its signature

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        for _, data in self._reader.frames(chunk):
            self._frame(data, events)
        return events

    def close(self) -> list[Event]:
        events: list[Event] = []
        for _, data in self._reader.close_frames():
            self._frame(data, events)
        if self._done:
            return events
        self._done = True
        self._close_block(events)
        if self._finish is None and not self._blocked:
            events.append(StreamError("upstream stream ended early", 502))
        else:
            stop = _stop_reason(self._finish, self._blocked, self._called)
            events.append(Finish(stop_reason=stop, usage=self._usage))
        return events

    def _frame(self, data: bytes, events: list[Event]) -> None:
        if self._done:
            return
        data = data.strip()
        if not data or data == b"[DONE]":
            return
        try:
            obj = loads(data)
        except ValueError:
            return
        for item in obj if isinstance(obj, list) else (obj,):
            if isinstance(item, dict) and not self._done:
                self._chunk(item, events)

    def _chunk(self, outer: dict[str, Any], events: list[Event]) -> None:
        obj = unwrap_code_assist(outer)
        error = obj.get("error")
        if error is not None:
            self._close_block(events)
            error = _dict(error) or {"message": str(error)}
            status = error.get("code")
            events.append(
                StreamError(
                    message=str(error.get("message") or error.get("status") or "upstream error"),
                    status=status if isinstance(status, int) else 500,
                )
            )
            self._done = True
            return
        meta = _get(obj, "usageMetadata")
        if meta is not None and meta == self._usage_seen:
            usage = self._usage  # Gemini repeats it on every chunk, mostly unchanged
        else:
            usage = _decode_usage(meta) if isinstance(meta, dict) and _has_counts(meta) else None
        if not self._started:
            self._started = True
            trace = outer.get("traceId")
            response_id = (trace if isinstance(trace, str) else "") or obj.get("responseId") or ""
            self._ids = _ResponseIds(response_id)
            start_usage = None
            if usage is not None:
                start_usage = Usage(input_tokens=usage.input_tokens, cached_tokens=usage.cached_tokens)
            events.append(
                Start(id=response_id, model=_bare_model(obj.get("modelVersion") or ""), usage=start_usage)
            )
        # candidates[0].content.parts, each step checked, without a helper call per step.
        candidates = obj.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(candidate, dict):
            candidate = {}
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict):
                self._part(part, events)
        finish = _get(candidate, "finishReason")
        if isinstance(finish, str) and finish:
            self._finish = finish
        if ("promptFeedback" in obj or "prompt_feedback" in obj) and _block_reason(obj) is not None:
            self._blocked = True
        if usage is not None:
            self._usage, self._usage_seen = usage, meta

    def _part(self, part: dict[str, Any], events: list[Event]) -> None:
        if len(part) == 1 and "text" in part:
            # A plain text part, most of a stream: none of the other fields to look for.
            if isinstance(text := part["text"], str) and text:
                events.append(Delta(self._ensure("text", events), text))
            return
        signature = _get(part, "thoughtSignature") or None
        call = _get(part, "functionCall")
        if isinstance(call, dict):
            self._close_block(events)
            index = self._next
            self._next += 1
            name = call.get("name") or ""
            args = call.get("args")
            assert self._ids is not None
            events.append(BlockStart(index, "tool_call", id=self._ids.call(name, call.get("id")), name=name))
            events.append(
                Delta(index, arguments=_dumps(args if isinstance(args, dict) else {}), signature=signature)
            )
            events.append(BlockStop(index))
            self._called = True
            return
        text = part.get("text")
        text = text if isinstance(text, str) else ""
        if part.get("thought"):
            if text:
                if self._signed:
                    self._close_block(events)  # a signature ends a run of thoughts
                events.append(Delta(self._ensure("thinking", events), text))
            if signature:
                self._sign(signature, events)
            return
        if signature:
            # A signature on a plain part belongs to the thoughts before it; with none open, it
            # gets an empty thinking block of its own (never an empty text block).
            self._sign(signature, events)
        if text:
            events.append(Delta(self._ensure("text", events), text))

    def _sign(self, signature: str, events: list[Event]) -> None:
        if self._signed:
            self._close_block(events)
        events.append(Delta(self._ensure("thinking", events), signature=signature))
        self._signed = True

    def _ensure(self, kind: Literal["text", "thinking"], events: list[Event]) -> int:
        if self._open is not None and self._kind == kind:
            return self._open
        self._close_block(events)
        index = self._open = self._next
        self._next += 1
        self._kind = kind
        events.append(BlockStart(index, kind))
        return index

    def _close_block(self, events: list[Event]) -> None:
        if self._open is not None:
            events.append(BlockStop(self._open))
            self._open = None
            self._kind = ""
            self._signed = False


_CHUNK_HEAD = b'{"candidates":[{"content":{"role":"model","parts":['
_CHUNK_MIDDLE = b']},"index":0}]'
# A text or thought part's chunk, most of a stream: around the string the C encoder writes.
_TEXT_HEAD = _CHUNK_HEAD + b'{"text":'
_TEXT_MIDDLE = b"}" + _CHUNK_MIDDLE
_THOUGHT_MIDDLE = b',"thought":true}' + _CHUNK_MIDDLE


class GeminiFramer:
    """How a Gemini stream carries its chunks: SSE events (`alt=sse`), or the elements of one
    JSON array, written as they come."""

    __slots__ = ("sse", "_opened")

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._opened = False  # the array's "[" is out

    def frame(self, payload: bytes) -> bytes:
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        if self._opened:
            return b",\r\n" + payload
        self._opened = True
        return b"[" + payload

    def end(self) -> bytes:
        """What ends the stream: nothing for SSE; the array's "]" (an empty array if none)."""
        if self.sse:
            return b""
        return b"]" if self._opened else b"[]"


class GeminiStreamEncoder:
    """Canonical events into a Gemini client's stream: SSE frames, or one streamed JSON array.

    Text and thinking go out as they arrive; a tool call's argument fragments are held until
    its block stops, because a Gemini `functionCall` carries its arguments whole.
    """

    __slots__ = (
        "_call",
        "_done",
        "_framer",
        "_held",
        "_keep_signatures",
        "_kinds",
        "_model",
        "_tail",
        "_text_tail",
        "_thought_tail",
    )

    def __init__(self, request: Request, sse: bool = True) -> None:
        self._framer = GeminiFramer(sse)
        self._done = False
        self._model = _bare_model(request.model)
        self._set_tail(self._meta(self._model, ""))
        self._kinds: dict[int, str] = {}
        # A foreign signature would come back in the client's next request and fail at Gemini.
        self._keep_signatures = True
        # The tool call being assembled: [id, name, argument fragments, signature]
        self._call: list[Any] | None = None
        # A call whose block stopped: sent at the next event, unless that is a Finish saying
        # the token limit cut it (a functionCall is whole, and a client runs it).
        self._held: list[Any] | None = None

    @staticmethod
    def _meta(model: str, response_id: str) -> bytes:
        tail = b""
        if model:
            tail += b',"modelVersion":' + _dumps(model).encode()
        if response_id:
            tail += b',"responseId":' + _dumps(response_id).encode()
        return tail + b"}"

    def _set_tail(self, tail: bytes) -> None:
        self._tail = tail
        self._text_tail = _TEXT_MIDDLE + tail
        self._thought_tail = _THOUGHT_MIDDLE + tail

    def encode(self, event: Event) -> bytes:
        if self._done:
            return b""
        out = b""
        if self._held is not None and not isinstance(event, (Finish, StreamError)):
            out = self._emit_call()
        if isinstance(event, Delta):
            return out + self._delta(event)
        if isinstance(event, BlockStart):
            self._kinds[event.index] = event.kind
            if event.kind == "tool_call":
                self._call = [event.id or "", event.name or "", [], None]
            return out
        if isinstance(event, BlockStop):
            kind = self._kinds.pop(event.index, None)
            if kind == "tool_call" and self._call is not None:
                self._held, self._call = self._call, None
            return out
        if isinstance(event, Start):
            self._set_tail(self._meta(_bare_model(event.model) or self._model, event.id))
            self._keep_signatures = event.origin in (None, GEMINI)
            return b""
        if isinstance(event, Finish):
            if self._held is not None and event.stop_reason is not StopReason.MAX_TOKENS:
                out = self._emit_call()
            return out + self._finish(event)
        if isinstance(event, StreamError):
            if self._held is not None:
                out = self._emit_call()  # it had finished before the error
            self._done = True
            payload = error_body(Format.GEMINI, event.status, event.message)
            return out + self._frame(payload) + self._framer.end()
        return out

    def close(self) -> bytes:
        if self._done:
            return b""
        # Gemini streams have no terminator, but ending without a finishReason would look like
        # a complete answer to some clients: say that it was cut off.
        return self.encode(StreamError("upstream stream ended early", 502))

    def _delta(self, event: Delta) -> bytes:
        kind = self._kinds.get(event.index)
        if kind == "tool_call":
            if self._call is not None:
                if event.arguments:
                    self._call[2].append(event.arguments)
                if event.signature and self._keep_signatures:
                    self._call[3] = event.signature
            return b""
        out = b""
        if event.text:
            tail = self._thought_tail if kind == "thinking" else self._text_tail
            out = self._frame(_TEXT_HEAD + json_string(event.text) + tail)
        if event.signature and self._keep_signatures:
            # Where Gemini itself puts it: on an empty, non-thought part after the thoughts.
            part = b'{"text":"","thoughtSignature":' + _dumps(event.signature).encode() + b"}"
            out += self._frame(_CHUNK_HEAD + part + _CHUNK_MIDDLE + self._tail)
        return out

    def _emit_call(self) -> bytes:
        assert self._held is not None
        call_id, name, fragments, signature = self._held
        self._held = None
        raw = "".join(fragments)
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError:
            args = {"_raw": raw}
        if not isinstance(args, dict):
            args = {"_raw": raw}
        function: dict[str, Any] = {"name": name, "args": args}
        if call_id:
            function["id"] = call_id
        part: dict[str, Any] = {"functionCall": function}
        if signature:
            part["thoughtSignature"] = signature
        return self._frame(_CHUNK_HEAD + _dumps(part).encode() + _CHUNK_MIDDLE + self._tail)

    def _finish(self, event: Finish) -> bytes:
        self._done = True
        candidate = b'{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":'
        candidate += _dumps(_FINISH_REASONS[event.stop_reason]).encode() + b',"index":0}]'
        if event.usage is not None:
            candidate += b',"usageMetadata":' + _dumps(_encode_usage(event.usage)).encode()
        return self._frame(candidate + self._tail) + self._framer.end()

    def _frame(self, payload: bytes) -> bytes:
        return self._framer.frame(payload)


def stream_decoder() -> GeminiStreamDecoder:
    return GeminiStreamDecoder()


def stream_encoder(request: Request, sse: bool = True) -> GeminiStreamEncoder:
    return GeminiStreamEncoder(request, sse)


CODEC = Codec(
    format=Format.GEMINI,
    decode_request=decode_request,
    encode_request=encode_request,
    decode_response=decode_response,
    encode_response=encode_response,
    stream_decoder=stream_decoder,
    stream_encoder=stream_encoder,
    error_message=error_message,
)
