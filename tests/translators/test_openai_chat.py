"""OpenAI Chat Completions codec: golden tests from the documented wire shapes, stream tests run
through the official SDK's own stream machinery, chunk-splitting and round-trip properties."""

from __future__ import annotations

import json
import random

import openai
import openai._streaming
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Image,
    Message,
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
)
from translators.formats import Format
from translators.openai_chat import (
    CODEC,
    ChatStreamDecoder,
    ChatStreamEncoder,
    chat_tool_call_id,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_message,
)

# The SDK's HTTP library: httpx up to openai 2, httpx2 from openai 3.
_sdk_httpx = getattr(openai._streaming, "httpx2", None) or openai._streaming.httpx

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def sdk_chunks(body: bytes) -> list[ChatCompletionChunk]:
    """The chunks the official SDK yields for a stream body (it raises on an error frame)."""
    response = _sdk_httpx.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=_sdk_httpx.Request("POST", "https://api.openai.com/v1/chat/completions"),
    )
    stream = openai.Stream(cast_to=ChatCompletionChunk, response=response, client=openai.OpenAI(api_key="sk-test"))
    return list(stream)


def sdk_accumulate(body: bytes, final: bool = True):
    state = ChatCompletionStreamState()
    for chunk in sdk_chunks(body):
        state.handle_chunk(chunk)
    # get_final_completion raises on "length" / "content_filter" by design; the snapshot does not.
    return state.get_final_completion() if final else state.current_completion_snapshot


def check_sequence(events: list[Event]) -> None:
    """The canonical stream rule: Start, blocks that never interleave, one terminal event, last."""
    assert events, "no events"
    terminal = events[-1]
    assert isinstance(terminal, (Finish, StreamError))
    assert not any(isinstance(e, (Finish, StreamError)) for e in events[:-1])
    body = events[:-1]
    if isinstance(terminal, Finish) or body:
        assert isinstance(body[0], Start)
        assert not any(isinstance(e, Start) for e in body[1:])
    open_block: int | None = None
    last_index = -1
    for event in body[1:]:
        if isinstance(event, BlockStart):
            assert open_block is None, "blocks interleave"
            assert event.index > last_index
            open_block = last_index = event.index
        elif isinstance(event, Delta):
            assert event.index == open_block
        elif isinstance(event, BlockStop):
            assert event.index == open_block
            open_block = None
    assert open_block is None, "a block was left open"


def decode_stream(body: bytes, splits: list[int] | None = None) -> list[Event]:
    decoder = ChatStreamDecoder()
    events: list[Event] = []
    start = 0
    for point in splits or []:
        events += decoder.feed(body[start:point])
        start = point
    events += decoder.feed(body[start:])
    events += decoder.close()
    return events


def frames(*chunks: dict | str) -> bytes:
    return b"".join(
        f"data: {c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)}\n\n".encode() for c in chunks
    )


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    base = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4.1"}
    if delta is None and finish is None:
        return {**base, "choices": [], **extra}
    return {
        **base,
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


# -- decode_request ------------------------------------------------------------------------------------


REALISTIC_REQUEST = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": [
            {"type": "text", "text": "Compare Paris and Tokyo. Here are two photos."},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/tokyo.jpg?size=large"}},
        ]},
        {"role": "assistant", "content": "Let me check both.", "tool_calls": [
            {"id": "call_paris", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_tokyo", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\",\"unit\":\"celsius\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_paris", "content": "18°C, cloudy"},
        {"role": "tool", "tool_call_id": "call_tokyo", "content": [
            {"type": "text", "text": "Error: weather service unavailable"},
        ]},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in one sentence."}]},
        {"role": "user", "content": "Retry Tokyo later; summarise Paris."},
        {"role": "assistant", "content": None, "reasoning_content": "The user wants a summary.",
         "tool_calls": [{"id": "call_retry", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Tok"}}]},
        {"role": "tool", "tool_call_id": "call_retry", "content": [
            {"type": "text", "text": "radar"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        ]},
    ],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_SCHEMA, "strict": True,
    }}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "reasoning_effort": "high",
    "max_completion_tokens": 2048,
    "max_tokens": 99,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": "\n\nEND",
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "weather_summary", "strict": True,
        "schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]},
    }},
    "n": 1,
    "seed": 7,
    "user": "user-123",
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_decode_realistic_request():
    request = decode_request(REALISTIC_REQUEST)
    assert request == Request(
        model="gpt-4.1",
        system=[Text("You are a weather assistant."), Text("Answer in one sentence.")],
        messages=[
            Message("user", [
                Text("Compare Paris and Tokyo. Here are two photos."),
                Image(media_type="image/png", data=PNG_B64),
                Image(media_type="image/jpeg", url="https://example.com/tokyo.jpg?size=large"),
            ]),
            Message("assistant", [
                Text("Let me check both."),
                ToolCall(id="call_paris", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id="call_tokyo", name="get_weather", arguments={"city": "Tokyo", "unit": "celsius"}),
            ]),
            # Both tool messages in ONE user message, then the next user text in that same message.
            Message("user", [
                ToolResult(call_id="call_paris", content=[Text("18°C, cloudy")], name="get_weather"),
                ToolResult(call_id="call_tokyo", content=[Text("Error: weather service unavailable")],
                           name="get_weather"),
                Text("Retry Tokyo later; summarise Paris."),
            ]),
            Message("assistant", [
                Thinking(text="The user wants a summary.", origin="openai-chat"),
                ToolCall(id="call_retry", name="get_weather", arguments={"_raw": "{\"city\": \"Tok"}),
            ]),
            Message("user", [
                ToolResult(call_id="call_retry", name="get_weather",
                           content=[Text("radar"), Image(media_type="image/png", data=PNG_B64)]),
            ]),
        ],
        tools=[Tool(name="get_weather", description="Current weather for a city", parameters=WEATHER_SCHEMA)],
        tool_choice=ToolChoice(mode="tool", name="get_weather", parallel=False),
        max_tokens=2048,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\nEND"],
        stream=True,
        reasoning=Reasoning(effort="high"),
        response_format=ResponseFormat(
            type="json_schema",
            name="weather_summary",
            strict=True,
            schema={"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]},
        ),
        n=1,
        stream_usage=True,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", ToolChoice("auto")),
        ("none", ToolChoice("none")),
        ("required", ToolChoice("any")),
        ({"type": "function", "function": {"name": "f"}}, ToolChoice("tool", name="f")),
    ],
)
def test_decode_tool_choice(raw, expected):
    body = {"model": "m", "messages": [], "tool_choice": raw,
            "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert decode_request(body).tool_choice == expected


def test_decode_allowed_tools_narrows_the_tool_list():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": n}} for n in ("a", "b", "c")],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {
            "mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]}},
        "parallel_tool_calls": True,
    }
    request = decode_request(body)
    assert [t.name for t in request.tools] == ["b"]
    assert request.tool_choice == ToolChoice("any", parallel=True)


def test_decode_parallel_without_tool_choice_and_plain_params():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "parallel_tool_calls": True,
        "max_tokens": 100,
        "stop": ["a", "b"],
        "response_format": {"type": "json_object"},
        "stream": True,  # no stream_options: the client does not want usage
    }
    request = decode_request(body)
    assert request.tool_choice == ToolChoice("auto", parallel=True)
    assert request.tools == [Tool(name="f")]
    assert request.max_tokens == 100
    assert request.stop == ["a", "b"]
    assert request.response_format == ResponseFormat("json_object")
    assert request.stream and not request.stream_usage
    assert request.reasoning is None


def test_decode_tool_messages_not_followed_by_user_stay_alone():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": ""},  # empty: dropped
        {"role": "user", "content": "next"},
    ]}
    assert decode_request(body).messages == [
        Message("user", [Text("go")]),
        Message("assistant", [ToolCall("c1", "f", {})]),
        Message("user", [ToolResult("c1", [Text("done")], name="f")]),
        Message("assistant", [Text("ok")]),
        Message("user", [Text("next")]),
    ]


def test_decode_pdf_file_part_and_refusal():
    body = {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "file", "file": {
            "filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="}}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
    ]}
    assert decode_request(body).messages == [
        Message("user", [Image(media_type="application/pdf", data="JVBERi0xLjQ=")]),
        Message("assistant", [Text("I can't help with that.")]),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
        {"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]},
        {"model": "m", "messages": [], "functions": [{"name": "f"}]},
        {"model": "m", "messages": "hello"},
        {"model": "m", "messages": [{"role": "critic", "content": "x"}]},
    ],
)
def test_decode_untranslatable_input_is_a_client_error(body):
    with pytest.raises(ValueError):
        decode_request(body)


# -- encode_request ------------------------------------------------------------------------------------


LONG_ID = "functions.get_weather:0|" + "x" * 40  # e.g. Kimi/Gemini style, too long for OpenAI


def canonical_request() -> Request:
    return Request(
        model="gpt-4.1",
        system=[Text("You are terse."), Text("Use metric units.")],
        messages=[
            Message("user", [
                Text("Weather in Paris and Tokyo?"),
                Image(media_type="image/jpeg", data="/9j/4AAQ"),
                Image(media_type="", url="https://example.com/map.png"),
            ]),
            Message("assistant", [
                Thinking(text="Two cities: call twice.", signature="sig-anthropic", origin="anthropic"),
                Text("Checking."),
                ToolCall(id="toolu_01A", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id=LONG_ID, name="get_weather", arguments={"city": "東京"}),
            ]),
            Message("user", [
                ToolResult(call_id="toolu_01A", content=[Text("18°C")]),
                ToolResult(call_id=LONG_ID, content=[Text("rain"), Image(media_type="image/png", data=PNG_B64)],
                           is_error=True),
                Text("Thanks!"),
            ]),
        ],
        tools=[Tool(name="get_weather", description="Weather", parameters=WEATHER_SCHEMA), Tool(name="noop")],
        tool_choice=ToolChoice(mode="any", parallel=False),
        max_tokens=1024,
        temperature=0.5,
        top_p=0.8,
        top_k=40,
        stop=["STOP"],
        stream=True,
        reasoning=Reasoning(budget=8192),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name="out", strict=True),
        stream_usage=False,
    )


def test_encode_request_golden():
    hashed = chat_tool_call_id(LONG_ID)
    assert hashed.startswith("call_") and len(hashed) <= 40
    assert encode_request(canonical_request()) == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "You are terse.\n\nUse metric units."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Tokyo?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/map.png"}},
            ]},
            # Anthropic thinking is not sent; text and both calls in ONE assistant message.
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_01A", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": hashed, "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"東京\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C"},
            {"role": "tool", "tool_call_id": hashed, "content": "rain"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "text", "text": "Thanks!"},
            ]},
        ],
        "max_completion_tokens": 1024,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["STOP"],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                              "parameters": WEATHER_SCHEMA}},
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"},
                                                                   "strict": True}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_encode_request_edge_cases():
    request = Request(
        model="m",
        messages=[
            Message("user", [Text("hi")]),
            Message("assistant", [Thinking(text="deepseek thoughts", origin="openai-chat"),
                                  ToolCall(id="c1", name="f", arguments={"_raw": "{bad"})]),
            Message("user", [ToolResult(call_id="c1", content=[])]),
            Message("assistant", [Thinking(text="gemini", signature="s", origin="gemini")]),  # nothing to send
            Message("assistant", [Thinking(text="only reasoning", origin="openai-chat")]),
            Message("user", [Image(media_type="application/pdf", data="JVBERi0=")]),
        ],
        tool_choice=ToolChoice(mode="tool", name="f", parallel=True),  # no tools: not sent
        reasoning=Reasoning(effort="auto"),
        response_format=ResponseFormat(type="json_object"),
        n=1,
    )
    assert encode_request(request) == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "reasoning_content": "deepseek thoughts",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": ""},
            {"role": "assistant", "content": "", "reasoning_content": "only reasoning"},
            {"role": "user", "content": [{"type": "file", "file": {
                "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "file.pdf"}}]},
        ],
        "response_format": {"type": "json_object"},
    }


def test_encode_named_tool_choice_and_effort_passthrough():
    request = Request(model="m", tools=[Tool(name="f")], tool_choice=ToolChoice("tool", name="f"),
                      reasoning=Reasoning(effort="xhigh"))
    body = encode_request(request)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["reasoning_effort"] == "xhigh"
    assert "parallel_tool_calls" not in body


def test_encode_request_refuses_several_choices():
    with pytest.raises(ValueError, match="n > 1"):
        encode_request(Request(model="m", n=2))


def test_tool_call_ids_map_deterministically():
    assert chat_tool_call_id("call_abc") == "call_abc"
    assert chat_tool_call_id(LONG_ID) == chat_tool_call_id(LONG_ID) != chat_tool_call_id(LONG_ID + "1")
    assert 0 < len(chat_tool_call_id("")) <= 40


# -- responses -----------------------------------------------------------------------------------------


DOCUMENTED_RESPONSE = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "deepseek-reasoner",
    "choices": [{
        "index": 0,
        "message": {
            "role": "assistant",
            "reasoning_content": "Need the weather first.",
            "content": "Let me look that up.",
            "refusal": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }],
    "usage": {
        "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}


def test_decode_response_golden():
    assert decode_response(DOCUMENTED_RESPONSE) == Response(
        id="chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        model="deepseek-reasoner",
        created=1741570283,
        parts=[
            Thinking(text="Need the weather first.", origin="openai-chat"),
            Text("Let me look that up."),
            ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=1117, output_tokens=46, cached_tokens=1024, reasoning_tokens=12),
    )


def _simple_response(finish_reason, message=None):
    return {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message or {"role": "assistant", "content": "hi"},
                         "finish_reason": finish_reason}]}


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", StopReason.END),
        ("length", StopReason.MAX_TOKENS),
        ("tool_calls", StopReason.TOOL_USE),
        ("content_filter", StopReason.REFUSAL),
        ("function_call", StopReason.TOOL_USE),
        (None, StopReason.END),
    ],
)
def test_decode_finish_reasons(finish, stop):
    response = decode_response(_simple_response(finish))
    assert response.stop_reason is stop
    assert response.usage == Usage()


def test_decode_response_tool_call_wins_over_stop_and_refusal():
    with_call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert decode_response(_simple_response("stop", with_call)).stop_reason is StopReason.TOOL_USE
    refusal = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    refused = decode_response(_simple_response("stop", refusal))
    assert refused.stop_reason is StopReason.REFUSAL
    assert refused.parts == [Text("I can't help with that.")]


def test_encode_response_golden_and_sdk_parse():
    response = Response(
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        model="claude-sonnet-4-5",
        created=1741570283,
        parts=[
            Thinking(text="Let me think.", signature="EqQBCgIYAh", origin="anthropic"),
            Text("It is "),
            Text("sunny."),
            ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Paris"}),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=120, output_tokens=30, cached_tokens=100, cache_write_tokens=5, reasoning_tokens=8),
    )
    body = encode_response(response)
    assert body == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "claude-sonnet-4-5",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "It is sunny.",
                "refusal": None,
                "reasoning_content": "Let me think.",
                "tool_calls": [{"id": "toolu_01", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }],
        "usage": {
            "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 8},
        },
    }
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.tool_calls[0].function.arguments == "{\"city\":\"Paris\"}"
    assert parsed.usage.prompt_tokens_details.cached_tokens == 100


@pytest.mark.parametrize(
    ("stop", "has_call", "finish"),
    [
        (StopReason.END, False, "stop"),
        (StopReason.END, True, "tool_calls"),  # a tool call wins over stop
        (StopReason.STOP_SEQUENCE, False, "stop"),
        (StopReason.MAX_TOKENS, True, "length"),
        (StopReason.TOOL_USE, True, "tool_calls"),
        (StopReason.REFUSAL, False, "content_filter"),
        (StopReason.ERROR, False, "stop"),
    ],
)
def test_encode_finish_reasons(stop, has_call, finish):
    parts = [ToolCall("c", "f", {})] if has_call else [Text("x")]
    body = encode_response(Response(id="r", model="m", parts=parts, stop_reason=stop, created=1))
    assert body["choices"][0]["finish_reason"] == finish
    ChatCompletion.model_validate(body)


def test_response_round_trip():
    response = decode_response(DOCUMENTED_RESPONSE)
    assert decode_response(encode_response(response)) == response


# -- stream decoding -----------------------------------------------------------------------------------


RECORDED_STREAM = (
    b": keep-alive\n\n"
    + frames(
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Think "}),
        chunk({"reasoning_content": "é🙂"}),
        chunk({"content": "Héllo"}),
        chunk({"content": " 🙂"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": None, "arguments": "{\"city\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk(finish="tool_calls"),
        chunk(usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                     "prompt_tokens_details": {"cached_tokens": 32},
                     "completion_tokens_details": {"reasoning_tokens": 5}}),
        "[DONE]",
    )
)

RECORDED_EVENTS = [
    Start(id="chatcmpl-abc", model="gpt-4.1", created=1700000000),
    BlockStart(0, "thinking"),
    Delta(0, text="Think "),
    Delta(0, text="é🙂"),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Héllo"),
    Delta(1, text=" 🙂"),
    BlockStop(1),
    BlockStart(2, "tool_call", id="call_a", name="get_weather"),
    Delta(2, arguments="{\"city\":"),
    Delta(2, arguments="\"Paris\"}"),
    BlockStop(2),
    BlockStart(3, "tool_call", id="call_b", name="get_time"),
    Delta(3, arguments="{}"),
    BlockStop(3),
    Finish(StopReason.TOOL_USE, usage=Usage(input_tokens=50, output_tokens=20, cached_tokens=32, reasoning_tokens=5)),
]


def test_decode_recorded_stream():
    events = decode_stream(RECORDED_STREAM)
    assert events == RECORDED_EVENTS
    check_sequence(events)


def test_decode_stream_every_split_point():
    for point in range(len(RECORDED_STREAM) + 1):
        assert decode_stream(RECORDED_STREAM, [point]) == RECORDED_EVENTS, point


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(RECORDED_STREAM)), max_size=40))
def test_decode_stream_random_splits(points):
    assert decode_stream(RECORDED_STREAM, sorted(points)) == RECORDED_EVENTS


def test_decode_stream_byte_by_byte_with_crlf():
    body = RECORDED_STREAM.replace(b"\n", b"\r\n")
    assert decode_stream(body, list(range(len(body)))) == RECORDED_EVENTS


def test_deltas_are_not_held_back_but_finish_waits_for_usage():
    decoder = ChatStreamDecoder()
    assert decoder.feed(frames(chunk({"role": "assistant", "content": "Hi"}))) == [
        Start("chatcmpl-abc", "gpt-4.1", created=1700000000), BlockStart(0, "text"), Delta(0, text="Hi")]
    assert decoder.feed(frames(chunk(finish="stop"))) == [BlockStop(0)]
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert decoder.feed(frames(chunk(usage=usage))) == [Finish(StopReason.END, usage=Usage(3, 1))]
    assert decoder.feed(frames("[DONE]")) == []
    assert decoder.close() == []


def test_finish_without_usage_chunk_comes_at_done_or_close():
    body = frames(chunk({"content": "x"}), chunk(finish="length"))
    assert decode_stream(body + frames("[DONE]"))[-1] == Finish(StopReason.MAX_TOKENS)
    assert decode_stream(body)[-1] == Finish(StopReason.MAX_TOKENS)  # EOF after the finish chunk


def test_usage_on_the_finish_chunk_itself():
    body = frames(chunk({"content": "x"}), chunk(finish="stop", usage={"prompt_tokens": 9, "completion_tokens": 2}),
                  "[DONE]")
    assert decode_stream(body)[-1] == Finish(StopReason.END, usage=Usage(9, 2))


def test_stream_ended_early():
    events = decode_stream(frames(chunk({"content": "partial"}),
                                  chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})))
    assert events[-3:] == [
        BlockStart(1, "tool_call", id="c", name="f"), BlockStop(1), StreamError("upstream stream ended early")]
    check_sequence(events)
    assert decode_stream(b"") == [StreamError("upstream stream ended early")]


def test_mid_stream_error_frame():
    body = frames(chunk({"content": "Hel"}),
                  {"error": {"message": "The server had an error", "type": "server_error", "code": 503}},
                  chunk({"content": "ignored"}))
    events = decode_stream(body)
    assert events == [Start("chatcmpl-abc", "gpt-4.1", created=1700000000), BlockStart(0, "text"),
                      Delta(0, text="Hel"), BlockStop(0), StreamError("The server had an error", 503)]


def test_non_json_frames_are_skipped_and_error_event_message_fallback():
    body = b"data: not json\n\n" + frames(chunk({"content": "x"})) + b'event: error\ndata: {"message":"boom"}\n\n'
    assert decode_stream(body)[-1] == StreamError("boom")


def test_error_event_with_plain_text_data():
    assert decode_stream(b"event: error\ndata: overloaded\n\n") == [StreamError("overloaded", 500)]


def test_done_without_finish_reason_infers_it():
    body = frames(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                  "[DONE]")
    assert decode_stream(body)[-1] == Finish(StopReason.TOOL_USE)


def test_tool_call_stop_finish_becomes_tool_use_and_refusal():
    calls = frames(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
                   chunk(finish="stop"), "[DONE]")
    assert decode_stream(calls)[-1] == Finish(StopReason.TOOL_USE)
    refusal = frames(chunk({"refusal": "No."}), chunk(finish="stop"), "[DONE]")
    assert decode_stream(refusal)[-2:] == [BlockStop(0), Finish(StopReason.REFUSAL)]


def test_tool_call_id_on_a_later_fragment_and_name_only_first():
    body = frames(
        chunk({"tool_calls": [{"index": 0, "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_late", "function": {"arguments": "{\"a\""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ":1}"}}]}),  # repeated name
        chunk(finish="tool_calls"), "[DONE]",
    )
    assert decode_stream(body)[1:] == [
        BlockStart(0, "tool_call", id="call_late", name="f"),
        Delta(0, arguments="{\"a\""),
        Delta(0, arguments=":1}"),
        BlockStop(0),
        Finish(StopReason.TOOL_USE),
    ]


def test_tool_calls_without_index_or_id():
    body = frames(
        chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk(finish="tool_calls"), "[DONE]",
    )
    events = decode_stream(body)
    check_sequence(events)
    assert [e for e in events if isinstance(e, BlockStart)] == [
        BlockStart(0, "tool_call", id="a", name="f"), BlockStart(1, "tool_call", id="b", name="g")]
    assert Delta(0, arguments="1}") in events


def test_tool_call_without_any_id_gets_a_stable_one():
    body = frames(chunk({"tool_calls": [{"index": 3, "function": {"name": "h", "arguments": "{}"}}]}),
                  chunk(finish="tool_calls"), "[DONE]")
    assert decode_stream(body)[1] == BlockStart(0, "tool_call", id="call_chatcmpl-abc_3", name="h")


def test_several_fragments_of_one_call_in_one_chunk():
    body = frames(
        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{\"a\":"}},
                              {"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(finish="tool_calls"), "[DONE]",
    )
    assert decode_stream(body)[1:4] == [BlockStart(0, "tool_call", id="c", name="f"),
                                        Delta(0, arguments="{\"a\":"), Delta(0, arguments="1}")]


def test_interleaved_parallel_call_fragments_fail_loudly():
    body = frames(
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    )
    events = decode_stream(body)
    check_sequence(events)
    assert isinstance(events[-1], StreamError)


def test_azure_prompt_filter_chunk_and_other_choices_are_skipped():
    azure_first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    second_choice = chunk({"content": "other"})
    second_choice["choices"][0]["index"] = 1
    body = frames(azure_first, chunk({"content": "x"}), second_choice, chunk(finish="stop"), "[DONE]")
    assert decode_stream(body) == [Start("chatcmpl-abc", "gpt-4.1", created=1700000000), BlockStart(0, "text"),
                                   Delta(0, text="x"), BlockStop(0), Finish(StopReason.END)]


def test_openrouter_reasoning_field():
    body = frames(chunk({"reasoning": "hmm"}), chunk({"content": "ok"}), chunk(finish="stop"), "[DONE]")
    assert decode_stream(body)[1:3] == [BlockStart(0, "thinking"), Delta(0, text="hmm")]


# -- stream encoding -----------------------------------------------------------------------------------


def encode_stream(events: list[Event], request: Request | None = None) -> bytes:
    encoder = ChatStreamEncoder(request or Request(model="m", stream=True, stream_usage=True), True)
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


ANTHROPIC_LIKE_EVENTS = [
    Start(id="msg_01", model="claude-sonnet-4-5", created=1741570283),
    BlockStart(0, "thinking"),
    Delta(0, text="Let me "),
    Delta(0, text="check 🙂"),
    Delta(0, signature="EqQBCgIYAh"),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Looking up "),
    Delta(1, text="the weather."),
    BlockStop(1),
    BlockStart(2, "tool_call", id="toolu_01", name="get_weather"),
    Delta(2, arguments=""),
    Delta(2, arguments="{\"city\":"),
    Delta(2, arguments="\"Paris\"}"),
    BlockStop(2),
    BlockStart(3, "tool_call", id="toolu_02", name="get_time"),
    Delta(3, arguments="{}"),
    BlockStop(3),
    Finish(StopReason.TOOL_USE, usage=Usage(input_tokens=100, output_tokens=40, cached_tokens=60, reasoning_tokens=9)),
]


def test_encoded_stream_through_the_sdk():
    body = encode_stream(ANTHROPIC_LIKE_EVENTS)
    assert body.endswith(b"data: [DONE]\n\n")
    chunks = sdk_chunks(body)
    assert {(c.id, c.object, c.created, c.model) for c in chunks} == {
        ("msg_01", "chat.completion.chunk", 1741570283, "claude-sonnet-4-5")}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 100
    assert all(c.usage is None for c in chunks[:-1])
    tool_headers = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [] if tc.id]
    assert [(tc.index, tc.id, tc.function.name) for tc in tool_headers] == [
        (0, "toolu_01", "get_weather"), (1, "toolu_02", "get_time")]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert reasoning == "Let me check 🙂"

    completion = sdk_accumulate(body)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Looking up the weather."
    assert [(t.id, t.function.name, t.function.arguments) for t in choice.message.tool_calls] == [
        ("toolu_01", "get_weather", "{\"city\":\"Paris\"}"), ("toolu_02", "get_time", "{}")]
    assert completion.usage.completion_tokens == 40
    assert completion.usage.completion_tokens_details.reasoning_tokens == 9
    assert completion.usage.prompt_tokens_details.cached_tokens == 60


def test_encoded_stream_exact_bytes_without_usage():
    events = [Start(id="chatcmpl-1", model="gpt-4.1", created=1), BlockStart(0, "text"), Delta(0, text="é"),
              BlockStop(0), Finish(StopReason.END, usage=Usage(1, 1))]
    body = encode_stream(events, Request(model="gpt-4.1", stream=True))
    head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":'
    assert body.decode() == (
        f'data: {head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}\n\n'
        f'data: {head}[{{"index":0,"delta":{{"content":"é"}},"logprobs":null,"finish_reason":null}}]}}\n\n'
        f'data: {head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}\n\n'
        "data: [DONE]\n\n"
    )
    assert sdk_accumulate(body).choices[0].message.content == "é"


def test_encoded_stream_tool_calls_win_over_stop_and_usage_defaults():
    events = [Start(id="r", model="m", created=1), BlockStart(0, "tool_call", id="c", name="f"),
              Delta(0, arguments="{}"), BlockStop(0), Finish(StopReason.END)]
    body = encode_stream(events)
    chunks = sdk_chunks(body)
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.total_tokens == 0


@pytest.mark.parametrize(("stop", "finish"), [(StopReason.MAX_TOKENS, "length"),
                                              (StopReason.REFUSAL, "content_filter"),
                                              (StopReason.STOP_SEQUENCE, "stop")])
def test_encoded_stream_finish_reasons(stop, finish):
    body = encode_stream([Start(id="r", model="m", created=1), Finish(stop)])
    assert sdk_accumulate(body, final=False).choices[0].finish_reason == finish


def test_encoded_stream_error_raises_in_the_sdk():
    events = [Start(id="r", model="m", created=1), BlockStart(0, "text"), Delta(0, text="par"),
              StreamError("upstream overloaded", 503)]
    encoder = ChatStreamEncoder(Request(model="m"), True)
    body = b"".join(encoder.encode(e) for e in events)
    assert encoder.encode(Finish(StopReason.END)) == b"" and encoder.close() == b""
    assert body.endswith(b"data: [DONE]\n\n")
    with pytest.raises(openai.APIError, match="upstream overloaded"):
        sdk_chunks(body)


def test_encoder_close_without_terminal_reports_an_error():
    encoder = ChatStreamEncoder(Request(model="m"), True)
    encoder.encode(Start(id="r", model="m", created=1))
    tail = encoder.close()
    assert tail.endswith(b"data: [DONE]\n\n") and b'"error"' in tail
    assert encoder.close() == b""


def test_stream_encode_then_decode_round_trip():
    body = encode_stream(ANTHROPIC_LIKE_EVENTS)
    events = decode_stream(body)
    check_sequence(events)
    expected = [e for e in ANTHROPIC_LIKE_EVENTS if not (isinstance(e, Delta) and not e.text and not e.arguments)]
    thinking_signature_free = [e for e in expected if not (isinstance(e, Delta) and e.signature)]
    assert events == thinking_signature_free


def test_decode_then_encode_stream_accumulates_like_the_non_stream_translation():
    """Recorded upstream stream -> canonical -> chat client stream, accumulated by the SDK, equals the
    whole-response translation of the same answer."""
    events = decode_stream(RECORDED_STREAM)
    completion = sdk_accumulate(encode_stream(events))
    response = Response(
        id="chatcmpl-abc", model="gpt-4.1", created=1700000000,
        parts=[Thinking("Think é🙂", origin="openai-chat"), Text("Héllo 🙂"),
               ToolCall("call_a", "get_weather", {"city": "Paris"}), ToolCall("call_b", "get_time", {})],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=50, output_tokens=20, cached_tokens=32, reasoning_tokens=5),
    )
    whole = ChatCompletion.model_validate(encode_response(response))
    assert completion.choices[0].message.content == whole.choices[0].message.content
    assert completion.choices[0].finish_reason == whole.choices[0].finish_reason
    def calls(message):
        return [(t.id, t.type, t.function.name, t.function.arguments) for t in message.tool_calls]

    assert calls(completion.choices[0].message) == calls(whole.choices[0].message)
    assert completion.usage == whole.usage


# -- request round trip (property) ---------------------------------------------------------------------

_text = st.text(min_size=1, max_size=12)
_ids = st.text(alphabet="abcdefghij_-0123456789", min_size=1, max_size=12).map(lambda s: "call_" + s)
_args = st.dictionaries(st.text(min_size=1, max_size=5), st.one_of(st.integers(), _text, st.booleans()), max_size=3)
_images = st.one_of(
    st.builds(Image, media_type=st.just("image/png"), data=st.text(alphabet="AZaz09+/", min_size=1, max_size=8)),
    st.builds(Image, media_type=st.just("image/jpeg"), url=st.just("https://example.com/a.jpg")),
)


@st.composite
def conversations(draw) -> list[Message]:
    messages: list[Message] = []
    for _ in range(draw(st.integers(1, 4))):
        user_parts = draw(st.lists(st.one_of(_text.map(Text), _images), min_size=1, max_size=3))
        if messages and (calls := [p for p in messages[-1].parts if isinstance(p, ToolCall)]):
            results = [ToolResult(c.id, draw(st.lists(_text.map(Text), max_size=1)), name=c.name) for c in calls]
            user_parts = results + draw(st.lists(_text.map(Text), max_size=1))
        messages.append(Message("user", user_parts))
        parts: list = []
        if draw(st.booleans()):
            parts.append(Thinking(draw(_text), origin="openai-chat"))
        if draw(st.booleans()):
            parts.append(Text(draw(_text)))
        ids = draw(st.lists(_ids, max_size=3, unique=True))
        parts += [ToolCall(i, draw(st.sampled_from(["f", "g"])), draw(_args)) for i in ids]
        # Always answer: two user turns in a row would (rightly) merge after tool results.
        messages.append(Message("assistant", parts or [Text(draw(_text))]))
    return messages


@settings(max_examples=150, deadline=None)
@given(
    messages=conversations(),
    system=st.lists(_text.map(Text), max_size=1),
    max_tokens=st.one_of(st.none(), st.integers(1, 10000)),
    temperature=st.one_of(st.none(), st.floats(0, 2)),
    effort=st.one_of(st.none(), st.sampled_from(["minimal", "low", "medium", "high"])),
    stop=st.lists(_text, max_size=4),
    stream=st.booleans(),
)
def test_request_round_trip(messages, system, max_tokens, temperature, effort, stop, stream):
    request = Request(
        model="m", messages=messages, system=system,
        tools=[Tool("f", "F", {"type": "object", "properties": {"x": {"type": "integer"}}}),
               Tool("g", "", {"type": "object", "properties": {}})],
        tool_choice=ToolChoice("auto", parallel=True),
        max_tokens=max_tokens, temperature=temperature, stop=stop, stream=stream,
        reasoning=Reasoning(effort=effort) if effort else None, stream_usage=stream,
    )
    body = json.loads(json.dumps(encode_request(request)))  # what goes over the wire
    assert decode_request(body) == request


# -- errors and wiring ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "param": None, "code": None}},
         "Rate limit reached"),
        ({"error": {"message": "", "type": "insufficient_quota", "code": "insufficient_quota"}}, "insufficient_quota"),
        ({"error": "bad gateway"}, "bad gateway"),
        ([{"error": {"message": "list-wrapped"}}], "list-wrapped"),
        ({"choices": []}, None),
        ("text", None),
    ],
)
def test_error_message(body, message):
    assert error_message(body) == message


def test_codec_wiring():
    assert CODEC.format is Format.OPENAI_CHAT
    assert CODEC.decode_request is decode_request
    assert isinstance(CODEC.stream_decoder(), ChatStreamDecoder)
    assert isinstance(CODEC.stream_encoder(Request(model="m"), True), ChatStreamEncoder)


def test_random_splits_of_an_encoded_stream_decode_identically():
    body = encode_stream(ANTHROPIC_LIKE_EVENTS)
    whole = decode_stream(body)
    rng = random.Random(1234)
    for _ in range(200):
        points = sorted(rng.sample(range(len(body)), rng.randint(1, 30)))
        assert decode_stream(body, points) == whole
