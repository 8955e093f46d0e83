"""Any JSON in any field of a client request: the decoder answers with a request or a ValueError
(the proxy's 400), never another exception (a 500), and what it answers is a well-typed
canonical request that every upstream encoder can take.

Each format's strategy follows its wire shape, and at every field position draws either a value
of the right kind or arbitrary JSON, so that wrong types reach every level of the decoder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from translators import translate
from translators.canonical import Image, Message, Request, Text, Thinking, ToolCall, ToolResult
from translators.codec import codec
from translators.formats import Format
from translators.shape import check_request

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def field(right: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right kind of value, else any JSON at all (a scalar as often as not)."""
    return st.one_of(right, right, json_scalars, json_values)


def obj(**fields: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: field(v) for k, v in fields.items()})


def arr(element: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(field(element), max_size=3)


def kinds(*names: str) -> st.SearchStrategy:
    return st.sampled_from(names)


text = st.text(max_size=8)
number = st.integers(-5, 100000) | st.floats(-2, 2, allow_nan=False)
integer = st.integers(-5, 100000)
schema = st.recursive(
    obj(type=kinds("object", "string", "OBJECT", "array"), description=text),
    lambda inner: obj(type=kinds("object", "array"), properties=st.dictionaries(text, inner, max_size=2), items=inner,
                      anyOf=arr(inner), required=arr(text), nullable=st.booleans()),
    max_leaves=4,
)

# Prompt-caching marks (LiteLLM's convention) and custom tool formats, in both OpenAI APIs.
_cache_control = obj(type=kinds("ephemeral", "other"), ttl=kinds("5m", "1h"))
_grammar = obj(syntax=kinds("lark", "regex"), definition=text)
_custom_format = obj(type=kinds("text", "grammar"), syntax=kinds("lark", "regex"), definition=text, grammar=_grammar)

# -- OpenAI Chat Completions -------------------------------------------------------------------

_chat_part = obj(
    type=kinds("text", "image_url", "file", "refusal", "input_audio"),
    text=text,
    cache_control=_cache_control,
    refusal=text,
    image_url=text | obj(url=kinds("https://x/a.png", "data:image/png;base64,AAAA", "")),
    file=obj(file_data=text, filename=text, file_id=text),
)
_chat_message = obj(
    role=kinds("system", "developer", "user", "assistant", "tool", "function", "other"),
    content=text | arr(_chat_part),
    tool_call_id=text,
    reasoning_content=text,
    reasoning=text,
    refusal=text,
    cache_control=_cache_control,
    tool_calls=arr(obj(id=text, type=kinds("function", "custom"), function=obj(name=text, arguments=text),
                       custom=obj(name=text, input=text))),
)
_chat_tool = obj(
    type=kinds("function", "custom"),
    function=obj(name=text, description=text, parameters=schema, cache_control=_cache_control),
    custom=obj(name=text, description=text, format=_custom_format),
    cache_control=_cache_control,
)
chat_bodies = obj(
    model=text,
    messages=arr(_chat_message),
    tools=arr(_chat_tool),
    tool_choice=kinds("auto", "none", "required", "other")
    | obj(type=kinds("function", "custom", "allowed_tools"), function=obj(name=text), custom=obj(name=text),
          allowed_tools=obj(mode=kinds("auto", "required"),
                            tools=arr(obj(type=kinds("function", "custom"), function=obj(name=text), custom=obj(name=text))))),
    parallel_tool_calls=st.booleans(),
    max_tokens=integer,
    max_completion_tokens=integer,
    temperature=number,
    top_p=number,
    top_k=integer,
    n=integer,
    stop=text | arr(text),
    stream=st.booleans(),
    stream_options=obj(include_usage=st.booleans()),
    reasoning_effort=kinds("low", "high", "auto"),
    response_format=obj(type=kinds("text", "json_object", "json_schema"),
                        json_schema=obj(name=text, schema=schema, strict=st.booleans())),
)

# -- OpenAI Responses --------------------------------------------------------------------------

_responses_part = obj(
    type=kinds("input_text", "output_text", "text", "refusal", "input_image", "input_file"),
    text=text,
    refusal=text,
    image_url=kinds("https://x/a.png", "data:image/png;base64,AAAA"),
    cache_control=_cache_control,
)
_responses_item = obj(
    type=kinds("message", "function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output",
               "reasoning", "item_reference", "web_search_call"),
    role=kinds("user", "assistant", "system", "developer", "tool"),
    content=text | arr(_responses_part),
    call_id=text,
    id=text,
    name=text,
    arguments=text,
    input=text,
    output=text | arr(_responses_part),
    summary=arr(obj(type=kinds("summary_text"), text=text)),
    encrypted_content=text,
)
responses_bodies = obj(
    model=text,
    instructions=text,
    input=text | arr(_responses_item),
    tools=arr(obj(type=kinds("function", "custom", "web_search"), name=text, description=text, parameters=schema,
                  format=_custom_format, cache_control=_cache_control)),
    tool_choice=kinds("auto", "required", "none", "other")
    | obj(type=kinds("function", "custom", "allowed_tools"), name=text, mode=text),
    parallel_tool_calls=st.booleans(),
    reasoning=obj(effort=kinds("low", "high"), summary=text),
    max_output_tokens=integer,
    temperature=number,
    top_p=number,
    text=obj(format=obj(type=kinds("json_schema", "json_object", "text"), schema=schema, name=text, strict=st.booleans())),
    metadata=st.dictionaries(text, text, max_size=2),
    include=arr(kinds("reasoning.encrypted_content")),
    store=st.booleans(),
    previous_response_id=text,
    stream=st.booleans(),
)

# -- Anthropic Messages ------------------------------------------------------------------------

_source = obj(type=kinds("base64", "url", "text", "file"), media_type=kinds("image/png", "application/pdf"),
              data=text, url=text)
_anthropic_inner = obj(type=kinds("text", "image", "document"), text=text, source=_source)
_anthropic_block = obj(
    type=kinds("text", "image", "document", "thinking", "redacted_thinking", "tool_use", "tool_result", "server_tool_use"),
    text=text,
    source=_source,
    thinking=text,
    signature=text,
    data=text,
    id=text,
    name=text,
    input=st.dictionaries(text, text, max_size=2),
    tool_use_id=text,
    content=text | arr(_anthropic_inner),
    is_error=st.booleans(),
)
anthropic_bodies = obj(
    model=text,
    max_tokens=integer,
    messages=arr(obj(role=kinds("user", "assistant", "system"), content=text | arr(_anthropic_block))),
    system=text | arr(obj(type=kinds("text"), text=text)),
    tools=arr(obj(type=kinds("custom", "web_search_20250305"), name=text, description=text, input_schema=schema)),
    tool_choice=obj(type=kinds("auto", "any", "none", "tool", "other"), name=text, disable_parallel_tool_use=st.booleans()),
    thinking=obj(type=kinds("enabled", "disabled", "adaptive"), budget_tokens=integer),
    output_config=obj(effort=kinds("low", "high"), format=obj(type=kinds("json_schema"), schema=schema)),
    output_format=obj(type=kinds("json_schema"), schema=schema),
    temperature=number,
    top_p=number,
    top_k=integer,
    stop_sequences=arr(text),
    metadata=obj(user_id=text),
    stream=st.booleans(),
)

# -- Gemini ------------------------------------------------------------------------------------

_blob = obj(mimeType=kinds("image/png", "application/pdf"), data=text, fileUri=text)
_gemini_part = obj(
    text=text,
    thought=st.booleans(),
    thoughtSignature=text,
    inlineData=_blob,
    file_data=_blob,
    functionCall=obj(name=text, id=text, args=st.dictionaries(text, text, max_size=2)),
    functionResponse=obj(name=text, id=text, response=obj(result=text, error=text), parts=arr(obj(inlineData=_blob))),
)
_gemini_body = obj(
    contents=arr(obj(role=kinds("user", "model", "function", "system"), parts=arr(_gemini_part))),
    systemInstruction=text | obj(parts=arr(obj(text=text))),
    tools=arr(obj(functionDeclarations=arr(obj(name=text, description=text, parameters=schema,
                                                    parametersJsonSchema=schema)))),
    toolConfig=obj(functionCallingConfig=obj(mode=kinds("AUTO", "ANY", "NONE"), allowedFunctionNames=arr(text))),
    generationConfig=obj(
        maxOutputTokens=integer | kinds("100", "x"),
        temperature=number,
        topP=number,
        top_k=integer,
        stopSequences=arr(text),
        candidateCount=integer,
        responseMimeType=kinds("application/json", "text/plain"),
        responseSchema=schema,
        responseJsonSchema=schema,
        thinkingConfig=obj(thinkingBudget=integer, thinkingLevel=kinds("LOW", "HIGH"), includeThoughts=st.booleans()),
    ),
)
gemini_bodies = _gemini_body | obj(model=text, project=text, request=_gemini_body) | obj(generateContentRequest=_gemini_body)

# -- legacy Completions ------------------------------------------------------------------------

completions_bodies = obj(
    model=text,
    prompt=text | arr(text),
    max_tokens=integer,
    temperature=number,
    top_p=number,
    n=integer,
    stop=text | arr(text),
    echo=st.booleans(),
    stream=st.booleans(),
    stream_options=obj(include_usage=st.booleans()),
)

BODIES = {
    Format.OPENAI_CHAT: chat_bodies,
    Format.OPENAI_RESPONSES: responses_bodies,
    Format.ANTHROPIC: anthropic_bodies,
    Format.GEMINI: gemini_bodies,
    Format.OPENAI_COMPLETIONS: completions_bodies,
}
UPSTREAMS = (Format.OPENAI_CHAT, Format.OPENAI_RESPONSES, Format.ANTHROPIC, Format.GEMINI)


def _optional(value: Any, *types: type) -> bool:
    # bool is an int to Python, never a number to JSON
    return value is None or (isinstance(value, types) and (bool in types or not isinstance(value, bool)))


def _mark(mark: Any) -> bool:
    """A cache_control mark as Anthropic takes it, or none."""
    return mark is None or (mark.get("type") == "ephemeral" and set(mark) <= {"type", "ttl"} and _optional(mark.get("ttl"), str))


def assert_well_typed(request: Request) -> None:
    """What encoders may rely on: every canonical field holds its declared type."""
    assert isinstance(request.model, str)
    assert all(isinstance(t, Text) and isinstance(t.text, str) and _mark(t.cache_control) for t in request.system)
    for message in request.messages:
        assert isinstance(message, Message) and message.role in ("user", "assistant")
        for part in message.parts:
            if isinstance(part, Text):
                assert isinstance(part.text, str) and _mark(part.cache_control)
            elif isinstance(part, Image):
                assert isinstance(part.media_type, str) and _optional(part.data, str) and _optional(part.url, str)
                assert _mark(part.cache_control)
            elif isinstance(part, Thinking):
                assert isinstance(part.text, str) and _optional(part.signature, str)
            elif isinstance(part, ToolCall):
                assert isinstance(part.id, str) and isinstance(part.name, str) and isinstance(part.arguments, dict)
                assert not part.custom or isinstance(part.arguments.get("input"), str)
            else:
                assert isinstance(part, ToolResult) and isinstance(part.call_id, str) and _mark(part.cache_control)
                assert all(isinstance(c, (Text, Image)) for c in part.content)
    for tool in request.tools:
        assert isinstance(tool.name, str) and isinstance(tool.description, str) and isinstance(tool.parameters, dict)
        assert _mark(tool.cache_control) and _optional(tool.format, dict)
        if tool.format is not None and tool.format.get("type") == "grammar":
            assert _optional(tool.format.get("syntax"), str) and _optional(tool.format.get("definition"), str)
    assert _optional(request.max_tokens, int) and _optional(request.top_k, int) and _optional(request.n, int)
    assert _optional(request.temperature, int, float) and _optional(request.top_p, int, float)
    assert all(isinstance(s, str) for s in request.stop)
    assert isinstance(request.metadata, dict)
    if request.reasoning is not None:
        assert _optional(request.reasoning.effort, str) and _optional(request.reasoning.budget, int)
    if request.tool_choice is not None:
        assert _optional(request.tool_choice.name, str) and _optional(request.tool_choice.parallel, bool)
    if request.response_format is not None:
        assert _optional(request.response_format.schema, dict) and _optional(request.response_format.name, str)


def exercise(fmt: Format, body: dict[str, Any]) -> None:
    """Decode as the codec does and as the proxy does, then encode for every upstream."""
    try:
        check_request(fmt, body)
    except ValueError:
        pass
    try:
        decoded = codec(fmt).decode_request(body)
    except ValueError:
        decoded = None
    if decoded is not None:
        assert_well_typed(decoded)
    try:
        request = translate.decode_request(fmt, body, "m(high)", bool(body.get("stream") is True))
    except translate.TranslationError:
        return
    assert_well_typed(request)
    for upstream in UPSTREAMS:
        for encode in (translate.encode_request, translate.count_request):
            try:
                encode(upstream, request)
            except translate.TranslationError:
                pass


@pytest.mark.parametrize("fmt", list(BODIES), ids=lambda f: f.value)
def test_any_json_in_any_field_is_a_request_or_a_400(fmt):
    @FUZZ
    @given(body=BODIES[fmt])
    def run(body):
        exercise(fmt, body)

    run()


@FUZZ
@given(body=st.dictionaries(st.text(max_size=20), json_values, max_size=6), fmt=st.sampled_from(list(BODIES)))
def test_arbitrary_objects_are_a_request_or_a_400(body, fmt):
    exercise(fmt, body)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"type": "object", "properties": {"p": value}}
    return value


@pytest.mark.parametrize("fmt", list(UPSTREAMS), ids=lambda f: f.value)
def test_deep_nesting_is_a_400_not_a_recursion_error(fmt):
    """Parsed fine (the JSON parser goes deeper than the codecs' Python recursion): refused."""
    tool = {
        Format.OPENAI_CHAT: {"type": "function", "function": {"name": "t", "parameters": nested(3000)}},
        Format.OPENAI_RESPONSES: {"type": "function", "name": "t", "parameters": nested(3000)},
        Format.ANTHROPIC: {"name": "t", "input_schema": nested(3000)},
        Format.GEMINI: {"functionDeclarations": [{"name": "t", "parameters": nested(3000)}]},
    }[fmt]
    conversation = {
        Format.OPENAI_CHAT: {"messages": [{"role": "user", "content": "hi"}]},
        Format.OPENAI_RESPONSES: {"input": "hi"},
        Format.ANTHROPIC: {"messages": [{"role": "user", "content": "hi"}]},
        Format.GEMINI: {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    }[fmt]
    body = {**conversation, "tools": [tool]}
    refused = 0
    for upstream in UPSTREAMS:
        try:
            request = translate.decode_request(fmt, body, "m", False)
            translate.encode_request(upstream, request)
        except translate.TranslationError as e:
            assert str(e) == translate.NESTED_TOO_DEEPLY
            refused += 1
    assert refused  # some codec recursed over the schema and was stopped


@pytest.mark.parametrize(
    "fmt,body,message",
    [
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 5}]},
         "messages[1].content: expected a string or a list of content parts, got a number"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]},
         "messages[0].content[0].text: expected a string, got a list"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}], "temperature": "hot"},
         "temperature: expected a number, got a string"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}], "tools": [{"function": "f"}]},
         "tools[0].function: expected an object, got a string"),
        (Format.ANTHROPIC, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, 7]}]},
         "messages[0].content[1]: expected an object, got a number"),
        (Format.ANTHROPIC, {"messages": {"role": "user"}}, "messages: expected a list, got an object"),
        (Format.ANTHROPIC, {"messages": [{"role": "user", "content": "a"}], "system": 3},
         "system: expected a string or a list of text blocks, got a number"),
        (Format.ANTHROPIC, {"messages": [{"role": "user", "content": "a"}], "thinking": {"type": "enabled", "budget_tokens": "lots"}},
         "thinking.budget_tokens: expected an integer, got a string"),
        (Format.OPENAI_RESPONSES, {"input": [{"type": "message", "role": "user", "content": {"text": "a"}}]},
         "input[0].content: expected a string or a list of content parts, got an object"),
        (Format.OPENAI_RESPONSES, {"input": 42}, "input: expected a string or a list of input items, got a number"),
        (Format.GEMINI, {"contents": [{"role": "user", "parts": [{"text": 1}]}]},
         "contents[0].parts[0].text: expected a string, got a number"),
        (Format.GEMINI, {"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"topK": []}},
         "generationConfig.topK: expected an integer, got a list"),
        (Format.GEMINI, {"contents": [{"parts": [{"inline_data": {"data": 5}}]}]},
         "contents[0].parts[0].inline_data.data: expected a string, got a number"),
        (Format.OPENAI_COMPLETIONS, {"prompt": "a", "max_tokens": "10"}, "max_tokens: expected an integer, got a string"),
        # Fields the fidelity work reads: prompt-caching marks and custom (freeform) tools.
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": "ephemeral"}]}]},
         "messages[0].content[0].cache_control: expected an object, got a string"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "system", "content": "a", "cache_control": {"type": "ephemeral", "ttl": 60}},
                                           {"role": "user", "content": "b"}]},
         "messages[0].cache_control.ttl: expected a string, got a number"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}],
                              "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": []}]},
         "tools[0].cache_control: expected an object, got a list"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "custom", "custom": "apply_patch"}]},
         "tools[0].custom: expected an object, got a string"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}],
                              "tools": [{"type": "custom", "custom": {"name": "p", "format": {"type": "grammar", "grammar": {"definition": 3}}}}]},
         "tools[0].custom.format.grammar.definition: expected a string, got a number"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "assistant", "tool_calls": [{"type": "custom", "custom": {"name": "p", "input": 5}}]}]},
         "messages[0].tool_calls[0].custom.input: expected a string, got a number"),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "a"}], "tool_choice": {"type": "custom", "custom": []}},
         "tool_choice.custom: expected an object, got a list"),
        (Format.OPENAI_RESPONSES, {"input": [{"role": "developer", "content": [{"type": "input_text", "text": "a", "cache_control": 1}]},
                                             {"role": "user", "content": "b"}]},
         "input[0].content[0].cache_control: expected an object, got a number"),
        (Format.OPENAI_RESPONSES, {"input": "a", "tools": [{"type": "custom", "name": "p", "format": {"type": "grammar", "syntax": 1}}]},
         "tools[0].format.syntax: expected a string, got a number"),
        (Format.OPENAI_RESPONSES, {"input": [{"type": "custom_tool_call", "call_id": "c", "name": "p", "input": {}}]},
         "input[0].input: expected a string, got an object"),
    ],
)
def test_a_wrong_type_is_named_by_its_path(fmt, body, message):
    with pytest.raises(translate.TranslationError) as raised:
        translate.decode_request(fmt, body, "m", False)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "fmt,body",
    [
        (Format.OPENAI_CHAT, {"messages": []}),
        (Format.OPENAI_CHAT, {"messages": [{"role": "system", "content": "only a system prompt"}]}),
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": ""}]}),
        (Format.ANTHROPIC, {"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "x"}]}]}),
        (Format.OPENAI_RESPONSES, {"input": [{"type": "item_reference", "id": "msg_1"}]}),
        (Format.OPENAI_RESPONSES, {"instructions": "be brief"}),
        (Format.GEMINI, {"contents": [{"role": "user", "parts": [{"executableCode": {}}]}]}),
        (Format.GEMINI, {}),
        (Format.OPENAI_COMPLETIONS, {"prompt": ""}),
    ],
)
def test_a_conversation_that_decodes_to_nothing_is_refused(fmt, body):
    with pytest.raises(translate.TranslationError, match="holds no conversation"):
        translate.decode_request(fmt, body, "m", False)


def test_nan_is_not_a_temperature():
    body = {"messages": [{"role": "user", "content": "a"}], "temperature": float("nan")}
    with pytest.raises(translate.TranslationError, match="temperature: expected a finite number, got nan"):
        translate.decode_request(Format.ANTHROPIC, body, "m", False)


# -- the whole attempt: pass-through, envelope and translation, on every kind of credential -------

from auth.credential import Credential  # noqa: E402
from routing import legs  # noqa: E402
from routing.endpoints import Endpoint, Kind  # noqa: E402
from routing.router import Route  # noqa: E402
from routing.upstream import ClientRequest  # noqa: E402
from translators.fields import FieldError  # noqa: E402

CREDENTIALS = [
    Credential(provider="claude", source="claude-api-key[0]", secret="k"),
    Credential(provider="gemini", source="gemini-api-key[0]", secret="k"),
    Credential(provider="codex", source="codex-api-key[0]", secret="k"),
    Credential(provider="openai-compatibility", source="compat", secret="k", base_url="http://127.0.0.1:9"),
    Credential(provider="codex", source="codex.json", secret="t", kind="oauth", account_id="a"),
    Credential(provider="gemini-cli", source="gemini.json", secret="t", kind="oauth", project_id="p"),
    Credential(provider="antigravity", source="ag.json", secret="t", kind="oauth", project_id="p"),
    Credential(provider="vertex", source="v.json", secret="t", kind="service-account", project_id="p", location="us"),
]
_HI = [{"role": "user", "content": "hi"}]
_CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]


def passing(bodies: st.SearchStrategy, conversation: dict) -> st.SearchStrategy:
    """Half of the bodies with a conversation the shape check lets through, so that the rest of
    the body reaches the attempt."""
    return st.one_of(bodies, bodies.map(lambda body: {**body, **conversation}))


ENDPOINTS = [
    (Format.OPENAI_CHAT, Endpoint(Kind.GENERATE, Format.OPENAI_CHAT), passing(chat_bodies, {"messages": _HI})),
    (Format.OPENAI_RESPONSES, Endpoint(Kind.GENERATE, Format.OPENAI_RESPONSES), passing(responses_bodies, {"input": "hi"})),
    (Format.ANTHROPIC, Endpoint(Kind.GENERATE, Format.ANTHROPIC), passing(anthropic_bodies, {"messages": _HI})),
    (Format.ANTHROPIC, Endpoint(Kind.COUNT_TOKENS, Format.ANTHROPIC), passing(anthropic_bodies, {"messages": _HI})),
    (Format.GEMINI, Endpoint(Kind.GENERATE, Format.GEMINI, "m", "generateContent"),
     passing(gemini_bodies, {"contents": _CONTENTS})),
    (Format.GEMINI, Endpoint(Kind.COUNT_TOKENS, Format.GEMINI, "m", "countTokens"),
     passing(gemini_bodies, {"contents": _CONTENTS})),
    (Format.GEMINI, Endpoint(Kind.GENERATE, Format.GEMINI, None, "streamGenerateContent", "v1internal", True),
     passing(_gemini_body.map(lambda inner: {"model": "m", "project": "p", "request": inner}),
             {"request": {"contents": _CONTENTS}})),
    (Format.OPENAI_COMPLETIONS, Endpoint(Kind.GENERATE, Format.OPENAI_COMPLETIONS),
     passing(completions_bodies, {"prompt": "hi"})),
]


@pytest.mark.parametrize("credential", CREDENTIALS, ids=lambda c: f"{c.provider}-{c.kind}")
@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=lambda i: f"{ENDPOINTS[i][0].value}-{ENDPOINTS[i][1].kind.value}")
def test_any_request_the_checks_let_through_plans_or_is_a_400(index, credential):
    """What `addons.common.client_request` accepts reaches `legs.plan`, which may refuse it with
    a TranslationError (a 400) and nothing else, whichever credential serves it: byte for byte,
    in an envelope or translated."""
    fmt, endpoint, bodies = ENDPOINTS[index]

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=bodies, model=st.sampled_from(["m", "m(high)"]))
    def run(body, model):
        plan_or_refuse(fmt, endpoint, credential, body, model)

    run()


def plan_or_refuse(fmt: Format, endpoint: Endpoint, credential: Credential, body: dict, model: str) -> None:
    try:
        check_request(fmt, body, counting=endpoint.kind is Kind.COUNT_TOKENS, envelope=endpoint.code_assist)
    except FieldError:
        return
    raw = json.dumps(body).encode()
    client = ClientRequest(endpoint, model, endpoint.streams_by_path or body.get("stream") is True, "POST", "/", (),
                           {}, (), raw, body)
    try:
        leg = legs.plan(client, Route(credential, model), {})
    except translate.TranslationError:
        return
    assert isinstance(leg.body, bytes) or leg.local_answer is not None
