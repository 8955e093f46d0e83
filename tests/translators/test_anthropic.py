"""translators.anthropic: Anthropic Messages <-> canonical, checked against documented shapes and the SDK."""

from __future__ import annotations

import json
import random

import anthropic
import anthropic._base_client as sdk_base
import pytest
from anthropic.types import Message as SDKMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from translators.anthropic import (
    CODEC,
    DEFAULT_MAX_TOKENS,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_message,
    sanitize_tool_id,
    stream_decoder,
    stream_encoder,
)
from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
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

# The SDK's own HTTP library: httpx for anthropic<1, httpx2 for the newer line.
http = getattr(sdk_base, "httpx2", None) or sdk_base.httpx

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHR"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ"


def test_codec_export():
    assert CODEC.format is Format.ANTHROPIC
    assert CODEC.decode_request is decode_request


# -- requests: decode ---------------------------------------------------------------------------


DOCUMENTED_REQUEST = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 16000,
    "system": [
        {"type": "text", "text": "You are a helpful weather assistant."},
        {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/ant.jpg"}},
                {"type": "text", "text": "What is in these images? Then get the weather in Paris and Tokyo."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two cities, two calls.", "signature": SIG},
                {"type": "redacted_thinking", "data": REDACTED},
                {"type": "text", "text": "An ant. Checking the weather."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "Paris, FR"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_weather",
                 "input": {"location": "Tokyo, JP", "unit": "celsius"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": True,
                 "content": [{"type": "text", "text": "ConnectionError: the weather service is down"}]},
                {"type": "text", "text": "Retry Tokyo, and draw me a chart."},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01C", "name": "draw_chart", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01C", "content": [
                    {"type": "text", "text": "chart:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ]},
            ],
        },
        {"role": "assistant", "content": "Here is the chart."},
        {"role": "user", "content": "Thanks!"},
    ],
    "tools": [
        {"name": "get_weather", "description": "Get the current weather in a given location",
         "input_schema": WEATHER_SCHEMA, "cache_control": {"type": "ephemeral"}},
        {"name": "draw_chart", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "temperature": 1,
    "top_p": 0.99,
    "top_k": 40,
    "stop_sequences": ["\n\nHuman:", "END"],
    "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
    "stream": True,
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
}


def test_decode_documented_request():
    req = decode_request(DOCUMENTED_REQUEST)
    expected = Request(
        model="claude-sonnet-4-5-20250929",
        system=[Text("You are a helpful weather assistant."), Text("Answer in French.")],
        messages=[
            Message("user", [
                Image("image/jpeg", data=JPEG),
                Image("", url="https://upload.wikimedia.org/ant.jpg"),
                Text("What is in these images? Then get the weather in Paris and Tokyo."),
            ]),
            Message("assistant", [
                Thinking("Two cities, two calls.", signature=SIG, origin="anthropic"),
                Thinking("", signature=REDACTED, origin="anthropic", redacted=True),
                Text("An ant. Checking the weather."),
                ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "Paris, FR"}),
                ToolCall("toolu_01B", "get_weather", {"location": "Tokyo, JP", "unit": "celsius"}),
            ]),
            Message("user", [
                ToolResult("toolu_01A09q90qw90lq917835lq9", [Text("15 degrees")], name="get_weather"),
                ToolResult("toolu_01B", [Text("ConnectionError: the weather service is down")],
                           is_error=True, name="get_weather"),
                Text("Retry Tokyo, and draw me a chart."),
            ]),
            Message("assistant", [ToolCall("toolu_01C", "draw_chart", {})]),
            Message("user", [
                ToolResult("toolu_01C", [Text("chart:"), Image("image/png", data=PNG)], name="draw_chart"),
            ]),
            Message("assistant", [Text("Here is the chart.")]),
            Message("user", [Text("Thanks!")]),
        ],
        tools=[
            Tool("get_weather", "Get the current weather in a given location", WEATHER_SCHEMA),
            Tool("draw_chart", "", {"type": "object", "properties": {}}),
        ],
        tool_choice=ToolChoice("auto", parallel=True),
        max_tokens=16000,
        temperature=1,
        top_p=0.99,
        top_k=40,
        stop=["\n\nHuman:", "END"],
        stream=True,
        reasoning=Reasoning(budget=10000),
        response_format=ResponseFormat("json_schema", schema={"type": "object"}),
        metadata={"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
    )
    assert req == expected


@pytest.mark.parametrize(
    ("extra", "reasoning"),
    [
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}}, Reasoning(effort="medium")),
        ({"thinking": {"type": "adaptive"}}, Reasoning(effort="auto")),
        ({"thinking": {"type": "disabled"}}, Reasoning(budget=0)),
        ({"output_config": {"effort": "low"}}, Reasoning(effort="low")),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "output_config": {"effort": "high"}},
         Reasoning(effort="high", budget=2048)),
        ({}, None),
    ],
)
def test_decode_reasoning(extra, reasoning):
    body = {"model": "claude-opus-4-6", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}], **extra}
    assert decode_request(body).reasoning == reasoning


def test_decode_request_small_shapes():
    req = decode_request({
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 100,
        "system": "Be terse.",
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain doc"}},
                {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                {"type": "text", "text": ""},
                {"type": "text", "text": "Summarise.", "citations": None},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_x", "name": "f", "input": "not json"},
            ]},
        ],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "output_format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}},
    })
    assert req.system == [Text("Be terse.")]
    assert req.messages[0].parts == [
        Image("application/pdf", data="JVBERi0x"), Text("plain doc"), Text("Summarise.")
    ]
    assert req.messages[1].parts == [ToolCall("toolu_x", "f", {"_raw": "not json"})]
    assert req.tool_choice == ToolChoice("tool", name="f", parallel=False)
    assert req.response_format == ResponseFormat("json_schema", schema={"type": "object", "properties": {}})
    assert req.stream is False and req.stop == [] and req.metadata == {}


# -- requests: encode ---------------------------------------------------------------------------


def _canonical_from_openai() -> Request:
    """What an OpenAI Chat client's conversation looks like once decoded."""
    return Request(
        model="claude-sonnet-4-5",
        system=[Text("You are terse."), Text("")],
        messages=[
            Message("user", [Text("Weather in Paris and Tokyo?"), Image("image/png", data=PNG),
                             Image("", url="https://example.com/cat.jpg"), Text("")]),
            Message("user", [Text("Quickly please.")]),
            Message("assistant", [
                Thinking("Let me think", signature="opaque-openai", origin="openai-responses"),
                Text(""),
                ToolCall("call_abc", "get_weather", {"location": "Paris"}),
                ToolCall("functions.Bash:0", "get_weather", {"location": "Tokyo"}),
            ]),
            Message("user", [ToolResult("call_abc", [Text("15C")])]),
            Message("user", [Text("and the second one failed:")]),
            Message("user", [ToolResult("functions.Bash:0", [Text("timeout"), Image("image/png", data=PNG)],
                                        is_error=True)]),
            Message("assistant", [Text("")]),
        ],
        tools=[Tool("get_weather", "Weather by city", WEATHER_SCHEMA), Tool("noop")],
        tool_choice=ToolChoice("any", parallel=False),
        max_tokens=2000,
        temperature=0.2,
        top_p=0.9,
        top_k=5,
        stop=["STOP", "  "],
        stream=True,
        metadata={"user_id": "u-1", "session": "x"},
        response_format=ResponseFormat("json_schema", schema={"type": "object"}, name="answer", strict=True),
    )


def test_encode_request_exact():
    body = encode_request(_canonical_from_openai())
    bash_id = "functions_Bash_0_a97d15071f75fb20"
    assert sanitize_tool_id("functions.Bash:0") == bash_id
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2000,
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Tokyo?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "Quickly please."},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": bash_id, "name": "get_weather", "input": {"location": "Tokyo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_abc", "content": [{"type": "text", "text": "15C"}]},
                {"type": "tool_result", "tool_use_id": bash_id, "is_error": True, "content": [
                    {"type": "text", "text": "timeout"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ]},
                {"type": "text", "text": "and the second one failed:"},
            ]},
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA},
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "temperature": 0.2,
        "top_k": 5,
        "stop_sequences": ["STOP"],
        "stream": True,
        "metadata": {"user_id": "u-1"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }


def test_encode_request_minimal_defaults():
    body = encode_request(Request(model="claude-haiku-4-5", messages=[Message("user", [Text("hi")])]))
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


def _thinking_request(**kw) -> Request:
    base = dict(
        model="claude-sonnet-4-5-20250929",
        messages=[Message("user", [Text("Solve it")])],
        tools=[Tool("f", "", {"type": "object"})],
        tool_choice=ToolChoice("tool", name="f"),
        temperature=0.3,
        top_p=0.5,
        top_k=10,
    )
    base.update(kw)
    return Request(**base)


def test_encode_thinking_budget_constraints():
    body = encode_request(_thinking_request(reasoning=Reasoning(effort="high")))
    # high = 24576 tokens; no client max_tokens, so room for the answer is added.
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert body["max_tokens"] == 24576 + DEFAULT_MAX_TOKENS
    assert body["tool_choice"] == {"type": "auto"}  # forced tool use is rejected with thinking
    for key in ("temperature", "top_p", "top_k"):
        assert key not in body


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "thinking", "sent_max"),
    [
        (Reasoning(budget=500), None, {"type": "enabled", "budget_tokens": 1024}, 1024 + DEFAULT_MAX_TOKENS),
        (Reasoning(effort="minimal"), 4000, {"type": "enabled", "budget_tokens": 1024}, 4000),
        (Reasoning(budget=10000), 4000, {"type": "enabled", "budget_tokens": 3999}, 4000),
        (Reasoning(budget=10000), 900, None, 900),  # the client's cap leaves no room to think
        (Reasoning(effort="max"), None, {"type": "enabled", "budget_tokens": 63999}, 64000),
        (Reasoning(budget=-1), None, {"type": "enabled", "budget_tokens": 8192}, 8192 + DEFAULT_MAX_TOKENS),
        (Reasoning(effort="none"), None, {"type": "disabled"}, DEFAULT_MAX_TOKENS),
        (Reasoning(budget=0), 50, {"type": "disabled"}, 50),
    ],
)
def test_encode_thinking_budgets(reasoning, max_tokens, thinking, sent_max):
    body = encode_request(_thinking_request(reasoning=reasoning, max_tokens=max_tokens, temperature=None, top_p=None))
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == sent_max
    if thinking is None or thinking["type"] == "disabled":
        assert body["tool_choice"] == {"type": "tool", "name": "f"} and body["top_k"] == 10


@pytest.mark.parametrize(
    ("model", "effort", "sent"),
    [
        ("claude-opus-4-6", "high", "high"),
        ("claude-sonnet-4-6", "minimal", "low"),
        ("claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-opus-4.7", "max", "max"),
        ("anthropic.claude-opus-4-6-v1", "medium", "medium"),
        ("claude-mythos-preview", "low", "low"),
        ("claude-opus-4-6", "auto", None),
    ],
)
def test_encode_adaptive_thinking(model, effort, sent):
    body = encode_request(_thinking_request(model=model, reasoning=Reasoning(effort=effort), max_tokens=32000,
                                            temperature=1.0, top_p=0.97))
    assert body["thinking"] == {"type": "adaptive"}
    assert body.get("output_config", {}).get("effort") == sent
    assert body["temperature"] == 1.0 and "top_p" not in body and "top_k" not in body
    assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "claude-opus-4-5", "claude-3-7-sonnet-latest",
                                   "claude-haiku-4-5-20251001"])
def test_encode_budget_models(model):
    body = encode_request(_thinking_request(model=model, reasoning=Reasoning(effort="low"), max_tokens=4096))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_encode_thinking_kept_only_when_signed_by_anthropic():
    messages = [
        Message("user", [Text("q")]),
        Message("assistant", [
            Thinking("mine", signature=SIG, origin="anthropic"),
            Thinking("", signature=REDACTED, origin="anthropic", redacted=True),
            Thinking("unsigned", origin="anthropic"),
            Thinking("gemini's", signature="c2lnCg==", origin="gemini"),
            ToolCall("toolu_1", "f", {}),
        ]),
        Message("user", [ToolResult("toolu_1", [Text("ok")])]),
    ]
    body = encode_request(Request(model="claude-sonnet-4-5", messages=messages, reasoning=Reasoning(budget=2048),
                                  max_tokens=8000))
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "mine", "signature": SIG},
        {"type": "redacted_thinking", "data": REDACTED},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # a tool result with no content omits `content`
    assert decode_request(body).messages[2].parts == [ToolResult("toolu_1", [Text("ok")], name="f")]


def test_encode_no_thinking_mid_tool_loop_from_another_provider():
    messages = [
        Message("user", [Text("q")]),
        Message("assistant", [Thinking("theirs", signature="x", origin="gemini"), ToolCall("c1", "f", {})]),
        Message("user", [ToolResult("c1", [])]),
    ]
    body = encode_request(Request(model="claude-opus-4-6", messages=messages, reasoning=Reasoning(effort="high"),
                                  temperature=0.5))
    assert "thinking" not in body and "output_config" not in body
    assert body["temperature"] == 0.5
    assert body["messages"][2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1"}]}


def test_encode_request_misc():
    with pytest.raises(ValueError, match="n > 1"):
        encode_request(Request(model="m", messages=[Message("user", [Text("x")])], n=2))
    body = encode_request(Request(
        model="m",
        messages=[Message("user", [
            Image("application/pdf", data="JVBERi0x"),
            Image("", url="https://example.com/paper.pdf"),
            Image("text/plain", data="aGVsbG8="),
            Image("video/mp4", data="AAAA"),
        ])],
        temperature=1.7,
        tool_choice=ToolChoice("none"),  # no tools: not sent
        response_format=ResponseFormat("json_object"),
    ))
    assert body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
    ]
    assert body["temperature"] == 1.0
    assert "tool_choice" not in body and "output_config" not in body


def test_sanitize_tool_id():
    assert sanitize_tool_id("toolu_01A-b") == "toolu_01A-b"
    assert sanitize_tool_id("call|1") == sanitize_tool_id("call|1")
    assert sanitize_tool_id("call|1") != sanitize_tool_id("call:1")
    for raw in ("", "a.b", "é", "x\n", "functions.Bash:0"):
        out = sanitize_tool_id(raw)
        assert out and all(c.isascii() and (c.isalnum() or c in "_-") for c in out)


# -- responses ----------------------------------------------------------------------------------


DOCUMENTED_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants Paris weather.", "signature": SIG},
        {"type": "redacted_thinking", "data": REDACTED},
        {"type": "text", "text": "Let me check.", "citations": None},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
        {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
         "input": {"location": "Paris, FR"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472, "output_tokens": 91, "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 2048, "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                                            "ephemeral_1h_input_tokens": 0},
        "output_tokens_details": {"thinking_tokens": 40}, "service_tier": "standard",
    },
}


def test_decode_documented_response():
    resp = decode_response(DOCUMENTED_RESPONSE)
    assert resp == Response(
        id="msg_01XFDUDYJgAACzvnptvVoYEL",
        model="claude-sonnet-4-5-20250929",
        parts=[
            Thinking("The user wants Paris weather.", signature=SIG, origin="anthropic"),
            Thinking("", signature=REDACTED, origin="anthropic", redacted=True),
            Text("Let me check."),
            ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "Paris, FR"}),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=472 + 100 + 2048, output_tokens=91, cached_tokens=2048, cache_write_tokens=100,
                    reasoning_tokens=40),
    )


@pytest.mark.parametrize(
    ("wire", "reason", "sequence"),
    [
        ("end_turn", StopReason.END, None),
        ("stop_sequence", StopReason.STOP_SEQUENCE, "END"),
        ("max_tokens", StopReason.MAX_TOKENS, None),
        ("model_context_window_exceeded", StopReason.MAX_TOKENS, None),
        ("tool_use", StopReason.TOOL_USE, None),
        ("refusal", StopReason.REFUSAL, None),
        ("pause_turn", StopReason.END, None),
        (None, StopReason.END, None),
    ],
)
def test_decode_stop_reasons(wire, reason, sequence):
    body = {"id": "m", "model": "c", "content": [], "stop_reason": wire, "stop_sequence": "END" if sequence else None,
            "usage": {"input_tokens": 1, "output_tokens": 1}}
    resp = decode_response(body)
    assert (resp.stop_reason, resp.stop_sequence) == (reason, sequence)


def test_encode_response_exact():
    resp = Response(
        id="msg_1",
        model="claude-x",
        parts=[
            Thinking("mine", signature=SIG, origin="anthropic"),
            Thinking("", signature=REDACTED, origin="anthropic", redacted=True),
            Thinking("theirs", signature="foreign", origin="openai-responses"),
            Thinking("", signature="foreign", origin="gemini", redacted=True),
            Text(""),
            Text("Hello"),
            ToolCall("functions.Bash:0", "Bash", {"cmd": "ls"}, signature="gsig", origin="gemini"),
            ToolCall("", "f", {}),
        ],
        stop_reason=StopReason.END,  # a tool call wins over a plain stop
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=60, cache_write_tokens=10, reasoning_tokens=5),
    )
    body = encode_response(resp)
    assert body == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "mine", "signature": SIG},
            {"type": "redacted_thinking", "data": REDACTED},
            {"type": "thinking", "thinking": "theirs", "signature": ""},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "functions_Bash_0_a97d15071f75fb20", "name": "Bash", "input": {"cmd": "ls"}},
            {"type": "tool_use", "id": "toolu_msg_1_1", "name": "f", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 20, "cache_creation_input_tokens": 10,
                  "cache_read_input_tokens": 60, "output_tokens_details": {"thinking_tokens": 5}},
    }
    SDKMessage.model_validate(body)  # the SDK's own type accepts it


@pytest.mark.parametrize(
    ("reason", "sequence", "wire"),
    [
        (StopReason.END, None, "end_turn"),
        (StopReason.STOP_SEQUENCE, "###", "stop_sequence"),
        (StopReason.MAX_TOKENS, None, "max_tokens"),
        (StopReason.TOOL_USE, None, "tool_use"),
        (StopReason.REFUSAL, None, "refusal"),
        (StopReason.ERROR, None, "end_turn"),
    ],
)
def test_encode_stop_reasons(reason, sequence, wire):
    body = encode_response(Response("m", "c", [Text("x")], stop_reason=reason, stop_sequence=sequence))
    assert (body["stop_reason"], body["stop_sequence"]) == (wire, sequence)


def test_usage_never_negative():
    body = encode_response(Response("m", "c", usage=Usage(input_tokens=5, cached_tokens=10)))
    assert body["usage"]["input_tokens"] == 0


def test_error_message():
    assert error_message({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                          "request_id": "req_1"}) == "Overloaded"
    assert error_message({"type": "message"}) is None
    assert error_message([1]) is None
    assert error_message(None) is None


# -- streams: decode ----------------------------------------------------------------------------


def _frames(*events: dict, event_lines: bool = True) -> bytes:
    out = []
    for ev in events:
        head = f"event: {ev['type']}\n" if event_lines else ""
        out.append(f"{head}data: {json.dumps(ev, ensure_ascii=False)}\n\n")
    return "".join(out).encode()


RECORDED = [
    {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1, "cache_creation_input_tokens": 3,
                  "cache_read_input_tokens": 1000}}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Café? "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Think 🙂"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIG}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": REDACTED}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Voilà "}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "🙂"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "content_block_start", "index": 3,
     "content_block": {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 3,
     "delta": {"type": "input_json_delta", "partial_json": "{\"location\": \"Zürich"}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "\"}"}},
    {"type": "content_block_stop", "index": 3},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 89, "output_tokens_details": {"thinking_tokens": 30}}},
    {"type": "message_stop"},
]

RECORDED_EVENTS = [
    Start("msg_01", "claude-sonnet-4-5-20250929",
          Usage(input_tokens=1028, output_tokens=0, cached_tokens=1000, cache_write_tokens=3)),
    BlockStart(0, "thinking"),
    Delta(0, text="Café? "),
    Delta(0, text="Think 🙂"),
    Delta(0, signature=SIG),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Voilà "),
    Delta(1, text="🙂"),
    BlockStop(1),
    BlockStart(2, "tool_call", id="toolu_01", name="get_weather"),
    Delta(2, arguments="{\"location\": \"Zürich"),
    Delta(2, arguments="\"}"),
    BlockStop(2),
    Finish(StopReason.TOOL_USE,
           Usage(input_tokens=1028, output_tokens=89, cached_tokens=1000, cache_write_tokens=3, reasoning_tokens=30)),
]


def _decode_all(data: bytes, cuts: list[int] | None = None) -> list:
    decoder = stream_decoder()
    events: list = []
    previous = 0
    for cut in [*(cuts or []), len(data)]:
        events += decoder.feed(data[previous:cut])
        previous = cut
    return events + decoder.close()


def check_sequence(events: list) -> None:
    """The canonical stream rule: Start; blocks never interleave; one terminal event, last."""
    assert events, "no events"
    assert isinstance(events[0], (Start, StreamError))
    open_index, seen = None, set()
    for i, ev in enumerate(events):
        if isinstance(ev, (Finish, StreamError)):
            assert i == len(events) - 1 and open_index is None
        elif isinstance(ev, Start):
            assert i == 0
        elif isinstance(ev, BlockStart):
            assert open_index is None and ev.index not in seen
            open_index = ev.index
            seen.add(ev.index)
        elif isinstance(ev, Delta):
            assert ev.index == open_index
        elif isinstance(ev, BlockStop):
            assert ev.index == open_index
            open_index = None
    assert isinstance(events[-1], (Finish, StreamError))


def test_decode_recorded_stream():
    events = _decode_all(_frames(*RECORDED))
    assert events == RECORDED_EVENTS
    check_sequence(events)


def test_decode_stream_tolerates_missing_event_lines_done_and_comments():
    data = b": keep-alive\n\n" + _frames(*RECORDED, event_lines=False).replace(b"\n\n", b"\r\n\r\n") + b"data: [DONE]\n\n"
    assert _decode_all(data) == RECORDED_EVENTS


def test_decode_every_split_point_gives_identical_events():
    data = _frames(*RECORDED)
    assert "é".encode() in data and "🙂".encode() in data
    for cut in range(1, len(data)):
        assert _decode_all(data, [cut]) == RECORDED_EVENTS, cut


def test_decode_random_splits_and_single_bytes():
    data = _frames(*RECORDED)
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, 40)))
        assert _decode_all(data, cuts) == RECORDED_EVENTS
    assert _decode_all(data, list(range(1, len(data)))) == RECORDED_EVENTS


def test_decode_mid_stream_error():
    data = _frames(
        RECORDED[0],
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"},
    )
    events = _decode_all(data)
    assert events[1:] == [BlockStart(0, "text"), Delta(0, text="Hel"), BlockStop(0), StreamError("Overloaded", 529)]
    check_sequence(events)


def test_decode_truncated_stream_is_an_error_not_a_finish():
    data = _frames(*RECORDED[:12])  # cut inside the text block
    events = _decode_all(data[:-7])  # and inside a frame
    assert events[-2:] == [BlockStop(1), StreamError("upstream stream ended early", 502)]
    check_sequence(events)
    assert _decode_all(b"") == [StreamError("upstream stream ended early", 502)]


def test_decode_stop_sequence_and_late_usage():
    data = _frames(
        {"type": "message_start", "message": {"id": "m", "model": "c", "content": [],
                                              "usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "##"},
         "usage": {"output_tokens": 3, "input_tokens": 12, "cache_read_input_tokens": 4}},
        {"type": "message_stop"},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 99}},
    )
    assert _decode_all(data) == [
        Start("m", "c", Usage(input_tokens=10)),
        BlockStart(0, "text"),
        Delta(0, text="Hi"),
        BlockStop(0),
        Finish(StopReason.STOP_SEQUENCE, Usage(input_tokens=16, output_tokens=3, cached_tokens=4), "##"),
    ]


# -- streams: encode ----------------------------------------------------------------------------


def _events_for(resp: Response, start_usage: Usage | None = None) -> list:
    """The canonical stream equivalent to a whole response."""
    events: list = [Start(resp.id, resp.model, start_usage)]
    for i, part in enumerate(resp.parts):
        if isinstance(part, Text):
            events += [BlockStart(i, "text"), *[Delta(i, text=part.text[j:j + 3]) for j in range(0, len(part.text), 3)]]
        elif isinstance(part, Thinking):
            events += [BlockStart(i, "thinking"), Delta(i, text=part.text)]
            if part.signature:
                events.append(Delta(i, signature=part.signature))
        else:
            args = json.dumps(part.arguments, ensure_ascii=False)
            events += [BlockStart(i, "tool_call", id=part.id, name=part.name),
                       *[Delta(i, arguments=args[j:j + 4]) for j in range(0, len(args), 4)]]
        events.append(BlockStop(i))
    events.append(Finish(resp.stop_reason, resp.usage, resp.stop_sequence))
    return events


def _encode_all(events: list, request: Request | None = None) -> bytes:
    encoder = stream_encoder(request or Request(model="claude-requested"), True)
    return b"".join(encoder.encode(ev) for ev in events) + encoder.close()


def _sdk_stream(body: bytes):
    """Run the SDK's own `client.messages.stream` over `body`; return its events and final message."""

    def handler(request):
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = anthropic.Anthropic(api_key="sk-ant-test", base_url="http://anthropic.test", max_retries=0,
                                 http_client=http.Client(transport=http.MockTransport(handler)))
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        events = list(stream)
        return events, stream.get_final_message()


def _frames_of(body: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in body.decode().split("\n\n")[:-1]:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append((event_line[7:], json.loads(data_line[6:])))
    return out


STREAMED_RESPONSE = Response(
    id="msg_01",
    model="claude-sonnet-4-5",
    parts=[
        Thinking("Pensons… 🙂 d'abord", signature=SIG, origin="anthropic"),
        Text("Il fait beau à Zürich 🙂"),
        ToolCall("call.1", "get_weather", {"location": "Zürich", "days": [1, 2]}),
        ToolCall("toolu_2", "noop", {}),
    ],
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=1200, output_tokens=77, cached_tokens=1000, cache_write_tokens=50, reasoning_tokens=20),
)


def test_encode_stream_exact_frames():
    body = _encode_all(_events_for(STREAMED_RESPONSE, Usage(input_tokens=1200, cached_tokens=1000,
                                                            cache_write_tokens=50)))
    frames = _frames_of(body)
    assert all(name == data["type"] for name, data in frames)
    assert [name for name, _ in frames][:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert frames[0][1] == {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 150, "output_tokens": 0, "cache_creation_input_tokens": 50,
                  "cache_read_input_tokens": 1000}}}
    # the signature is the thinking block's last delta, just before its stop
    assert frames[3][1] == {"type": "content_block_delta", "index": 0,
                            "delta": {"type": "signature_delta", "signature": SIG}}
    assert frames[4][1] == {"type": "content_block_stop", "index": 0}
    tool_start = next(d for _, d in frames if d["type"] == "content_block_start" and d["index"] == 2)
    assert tool_start["content_block"] == {"type": "tool_use", "id": sanitize_tool_id("call.1"),
                                           "name": "get_weather", "input": {}}
    assert frames[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 150, "output_tokens": 77, "cache_creation_input_tokens": 50,
                                       "cache_read_input_tokens": 1000,
                                       "output_tokens_details": {"thinking_tokens": 20}}}
    assert frames[-1] == ("message_stop", {"type": "message_stop"})
    indexes = [d["index"] for _, d in frames if "index" in d]
    assert indexes == sorted(indexes) and set(indexes) == {0, 1, 2, 3}


def test_encoded_stream_accumulates_in_the_sdk_to_the_non_stream_translation():
    body = _encode_all(_events_for(STREAMED_RESPONSE, Usage(input_tokens=1200)))
    _, final = _sdk_stream(body)
    expected = SDKMessage.model_validate(encode_response(STREAMED_RESPONSE))
    got = final.to_dict(exclude_none=True)
    want = expected.to_dict(exclude_none=True)
    assert got == want
    assert got["content"][2]["input"] == {"location": "Zürich", "days": [1, 2]}


def test_encoded_stream_decodes_back_to_the_same_events():
    events = _events_for(STREAMED_RESPONSE, Usage(input_tokens=1200, cached_tokens=1000, cache_write_tokens=50))
    back = _decode_all(_encode_all(events))
    check_sequence(back)
    assert back[0] == events[0]
    calls = [e for e in back if isinstance(e, BlockStart) and e.kind == "tool_call"]
    assert [c.id for c in calls] == [sanitize_tool_id("call.1"), "toolu_2"]
    assert back[-1] == events[-1]


def test_encode_stream_drops_empty_blocks_and_keeps_indexes_contiguous():
    events = [
        Start("m", "c"),
        BlockStart(0, "text"), Delta(0, text=""), BlockStop(0),
        BlockStart(1, "thinking"), Delta(1, signature="only-a-signature"), BlockStop(1),
        BlockStart(2, "thinking"), BlockStop(2),
        BlockStart(5, "text"), Delta(5, text="hi"), Delta(4, text="stray"), BlockStop(5),
        BlockStart(6, "tool_call", id=None, name="f"), Delta(6, signature="gemini"), BlockStop(6),
        Finish(StopReason.END),
    ]
    frames = _frames_of(_encode_all(events))
    starts = [(d["index"], d["content_block"]["type"]) for _, d in frames if d["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use")]
    assert frames[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert frames[-2][1]["usage"] == {"output_tokens": 0}
    _, final = _sdk_stream(_encode_all(events))
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == "only-a-signature" and final.content[2].id == "toolu_m_0"


def test_encode_stream_without_start_synthesises_message_start():
    frames = _frames_of(_encode_all([BlockStart(0, "text"), Delta(0, text="x"), Finish(StopReason.MAX_TOKENS)]))
    assert frames[0][1]["message"]["model"] == "claude-requested"
    assert [d["type"] for _, d in frames] == ["message_start", "content_block_start", "content_block_delta",
                                              "content_block_stop", "message_delta", "message_stop"]
    assert frames[-2][1]["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(("status", "error_type"), [(529, "overloaded_error"), (503, "overloaded_error"),
                                                    (500, "api_error"), (429, "rate_limit_error")])
def test_encode_stream_error(status, error_type):
    encoder = stream_encoder(Request(model="m"), True)
    body = encoder.encode(Start("m", "c")) + encoder.encode(BlockStart(0, "text")) + encoder.encode(Delta(0, text="a"))
    body += encoder.encode(StreamError("Overloaded", status))
    body += encoder.encode(Finish(StopReason.END)) + encoder.close()
    frames = _frames_of(body)
    assert frames[-1] == ("error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    assert sum(1 for name, _ in frames if name in ("error", "message_stop")) == 1
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        _sdk_stream(body)


def test_encode_stream_closed_without_finish_reports_an_error():
    encoder = stream_encoder(Request(model="m"), True)
    body = encoder.encode(Start("m", "c")) + encoder.close()
    assert _frames_of(body)[-1][1]["type"] == "error"
    assert encoder.close() == b"" and encoder.encode(Finish(StopReason.END)) == b""


def test_encode_stream_terminal_event_once():
    encoder = stream_encoder(Request(model="m"), True)
    body = encoder.encode(Start("m", "c")) + encoder.encode(Finish(StopReason.END)) + encoder.encode(
        Finish(StopReason.END)) + encoder.close()
    assert [name for name, _ in _frames_of(body)] == ["message_start", "message_delta", "message_stop"]


# -- round trips --------------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)
_id = st.from_regex(r"toolu_[A-Za-z0-9_-]{1,12}", fullmatch=True)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
_args = st.dictionaries(st.text(min_size=1, max_size=6), _json_value, max_size=3)
_thinking = st.builds(Thinking, text=_text, signature=_text, origin=st.just("anthropic"))
_call = st.builds(ToolCall, id=_id, name=st.from_regex(r"[a-z_]{1,10}", fullmatch=True), arguments=_args)
_image = st.builds(Image, media_type=st.sampled_from(["image/png", "image/jpeg"]), data=st.just(PNG))


@st.composite
def conversations(draw):
    """Alternating turns; each assistant tool turn answered by one user message of results first."""
    messages: list[Message] = []
    for _ in range(draw(st.integers(1, 4))):
        user_parts = draw(st.lists(st.one_of(_text.map(Text), _image), min_size=1, max_size=3))
        if messages and (calls := [p for p in messages[-1].parts if isinstance(p, ToolCall)]):
            results = [ToolResult(c.id, draw(st.lists(_text.map(Text), max_size=2)), draw(st.booleans()), c.name)
                       for c in calls]
            user_parts = results + user_parts
        messages.append(Message("user", user_parts))
        parts = draw(st.lists(_thinking, max_size=1)) + draw(st.lists(_text.map(Text), min_size=1, max_size=2))
        calls = draw(st.lists(_call, max_size=2, unique_by=lambda c: c.id))
        messages.append(Message("assistant", parts + calls))
    return messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=conversations(),
    system=st.lists(_text.map(Text), max_size=2),
    max_tokens=st.integers(1, 100000),
    temperature=st.none() | st.floats(0, 1),
    stop=st.lists(_text, max_size=2),
)
def test_request_round_trip(messages, system, max_tokens, temperature, stop):
    req = Request(model="claude-3-5-haiku", messages=messages, system=system, max_tokens=max_tokens,
                  temperature=temperature, stop=stop,
                  tools=[Tool("t", "d", {"type": "object", "properties": {"a": {"type": "string"}}})],
                  tool_choice=ToolChoice("auto"))
    body = encode_request(req)
    assert json.loads(json.dumps(body)) == body
    assert decode_request(body) == req


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.one_of(_text.map(Text), _thinking, _call), max_size=5),
    reason=st.sampled_from([StopReason.END, StopReason.MAX_TOKENS, StopReason.REFUSAL]),
    usage=st.builds(Usage, input_tokens=st.integers(0, 10**6), output_tokens=st.integers(0, 10**5),
                    reasoning_tokens=st.integers(0, 100)),
)
def test_response_and_stream_round_trip(parts, reason, usage):
    if any(isinstance(p, ToolCall) for p in parts):
        reason = StopReason.TOOL_USE
    resp = Response("msg_x", "claude-x", parts, reason, usage=usage)
    assert decode_response(encode_response(resp)) == resp
    # the stream of the same response, through the encoder and back through the decoder
    back = _decode_all(_encode_all(_events_for(resp)))
    check_sequence(back)
    assert back[-1] == Finish(reason, usage)
    rebuilt: list = []
    for ev in back:
        if isinstance(ev, BlockStart):
            rebuilt.append([ev.kind, "", "", None, ev.id, ev.name])
        elif isinstance(ev, Delta):
            rebuilt[-1][1] += ev.text
            rebuilt[-1][2] += ev.arguments
            rebuilt[-1][3] = ev.signature or rebuilt[-1][3]
    expected = []
    for p in parts:
        if isinstance(p, Text):
            expected.append(["text", p.text, "", None, None, None])
        elif isinstance(p, Thinking):
            expected.append(["thinking", p.text, "", p.signature, None, None])
        else:
            expected.append(["tool_call", "", json.dumps(p.arguments, ensure_ascii=False), None, p.id, p.name])
    assert rebuilt == expected


def test_system_messages_within_the_conversation_join_the_system_prompt():
    """Anthropic takes `role: system` messages in `messages` (the SDK's SystemMessageParam), and
    Claude Code sends them: their text joins the system prompt, as a Chat client's would."""
    request = decode_request(
        {
            "model": "m",
            "max_tokens": 8,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "Mind the date."}]},
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "Answer in French."},
            ],
        }
    )
    assert [t.text for t in request.system] == ["Be brief.", "Mind the date.", "Answer in French."]
    assert [m.role for m in request.messages] == ["user", "assistant"]
