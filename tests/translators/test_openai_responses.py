"""OpenAI Responses codec: golden tests from the documented wire shapes, SDK parsing, streams."""

from __future__ import annotations

import json

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

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
from translators import custom_tools
from translators.codec import codec
from translators.formats import Format
from translators.openai_responses import (
    CODEC,
    StreamEncoder,
    codex_body,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    error_message,
    stream_decoder,
    stream_encoder,
)
from translators.sse import SSEReader

try:  # openai >= 3 speaks httpx2, older releases httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the venv
    import httpx

R = Format.OPENAI_RESPONSES.value
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
EVENTS = TypeAdapter(ResponseStreamEvent)


def test_codec_is_registered():
    assert CODEC.format is Format.OPENAI_RESPONSES
    assert codec(Format.OPENAI_RESPONSES) is CODEC


# -- requests: decode ----------------------------------------------------------------------

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}

# Shaped after the API reference (input items, function tools, text.format, reasoning) and what
# Codex CLI sends (developer message, reasoning replay with encrypted_content, no item ids).
CLIENT_REQUEST = {
    "model": "gpt-5.1-codex",
    "instructions": "You are a coding agent.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Be terse."}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in these images, and the weather in Paris?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
                {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "low"},
                {"type": "input_image", "file_id": "file-abc", "detail": "auto"},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [
                {"type": "summary_text", "text": "**Planning**"},
                {"type": "summary_text", "text": "Call both tools."},
            ],
            "encrypted_content": "gAAAAB-enc-1",
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_weather",
            "name": "get_weather",
            "arguments": '{"city":"Paris","unit":"c"}',
            "status": "completed",
        },
        {"type": "function_call", "call_id": "call_shot", "name": "screenshot", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "call_weather",
            "output": "Error: weather service timed out",
        },
        {
            "type": "function_call_output",
            "call_id": "call_shot",
            "output": [
                {"type": "input_text", "text": "screen:"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
            ],
        },
        {"role": "user", "content": "Thanks. Now answer."},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "item_reference", "id": "msg_old"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather",
            "parameters": WEATHER_SCHEMA,
            "strict": True,
        },
        {
            "type": "function",
            "name": "screenshot",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        },
        {"type": "web_search"},
        {"type": "custom", "name": "apply_patch", "description": "freeform", "format": {"type": "text"}},
    ],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "parallel_tool_calls": False,
    "reasoning": {"effort": "high", "summary": "auto"},
    "max_output_tokens": 2048,
    "temperature": 0.2,
    "top_p": 0.9,
    "text": {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "schema": {"type": "object"},
            "strict": True,
        },
        "verbosity": "low",
    },
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "stream": True,
    "prompt_cache_key": "abc",
    "metadata": {"session": "s1"},
}


def test_decode_request_golden():
    request = decode_request(CLIENT_REQUEST)
    assert request.model == "gpt-5.1-codex"
    assert request.stream is True
    assert request.system == [Text("You are a coding agent."), Text("Be terse.")]
    assert request.messages == [
        Message(
            "user",
            [
                Text("What is in these images, and the weather in Paris?"),
                Image(media_type="image/png", data=PNG),
                Image(media_type="", url="https://example.com/cat.jpg"),
            ],
        ),
        Message(
            "assistant",
            [
                Thinking(text="**Planning**\n\nCall both tools.", signature="gAAAAB-enc-1", origin=R),
                Text("Checking."),
                ToolCall(
                    id="call_weather", name="get_weather", arguments={"city": "Paris", "unit": "c"}
                ),
                ToolCall(id="call_shot", name="screenshot", arguments={}),
            ],
        ),
        Message(
            "user",
            [
                ToolResult(
                    call_id="call_weather",
                    content=[Text("Error: weather service timed out")],
                    name="get_weather",
                ),
                ToolResult(
                    call_id="call_shot",
                    content=[Text("screen:"), Image(media_type="image/png", data=PNG)],
                    name="screenshot",
                ),
                Text("Thanks. Now answer."),
            ],
        ),
    ]
    assert request.tools == [
        Tool(name="get_weather", description="Current weather", parameters=WEATHER_SCHEMA),
        Tool(name="screenshot", parameters={"type": "object", "properties": {}}),
        # A custom (freeform) tool: a function of one string for formats without them.
        Tool(
            name="apply_patch",
            description="freeform",
            parameters=custom_tools.PARAMETERS,
            custom=True,
            format={"type": "text"},
        ),
    ]
    assert request.tool_choice == ToolChoice("tool", name="get_weather", parallel=False)
    assert request.reasoning == Reasoning(effort="high")
    assert request.max_tokens == 2048
    assert request.temperature == 0.2
    assert request.top_p == 0.9
    assert request.response_format == ResponseFormat(
        type="json_schema", schema={"type": "object"}, name="answer", strict=True
    )
    assert request.metadata == {"session": "s1"}
    assert request.n is None and request.stop == [] and request.top_k is None


def test_decode_request_string_input():
    request = decode_request({"model": "gpt-4.1", "input": "Tell me a joke"})
    assert request.messages == [Message("user", [Text("Tell me a joke")])]
    assert request.system == [] and request.tools == [] and request.tool_choice is None
    assert request.stream is False and request.reasoning is None and request.response_format is None


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, ToolChoice("auto")),
        ("required", None, ToolChoice("any")),
        ("none", None, ToolChoice("none")),
        ({"type": "function", "name": "f"}, True, ToolChoice("tool", name="f", parallel=True)),
        ({"type": "allowed_tools", "mode": "required", "tools": []}, None, ToolChoice("any")),
        ({"type": "web_search_preview"}, None, None),
        ({"type": "custom", "name": "apply_patch"}, None, ToolChoice("tool", name="apply_patch")),
        (None, False, ToolChoice("auto", parallel=False)),
        (None, None, None),
    ],
)
def test_decode_tool_choice(tool_choice, parallel, expected):
    body: dict = {"model": "m", "input": "x"}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert decode_request(body).tool_choice == expected


def test_decode_request_json_object_and_reasoning_content():
    request = decode_request(
        {
            "model": "gpt-oss-120b",
            "input": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "q"},
                {
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "raw cot"}],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "not json"},
                {"type": "function_call_output", "call_id": "c1", "output": ""},
            ],
            "text": {"format": {"type": "json_object"}},
            "reasoning": {"summary": "auto"},
        }
    )
    assert request.system == [Text("sys")]
    assert request.messages == [
        Message("user", [Text("q")]),
        Message(
            "assistant",
            [Thinking(text="raw cot"), ToolCall(id="c1", name="f", arguments={"_raw": "not json"})],
        ),
        Message("user", [ToolResult(call_id="c1", content=[], name="f")]),
    ]
    assert request.response_format == ResponseFormat(type="json_object")
    assert request.reasoning is None  # a summary setting alone asks for no effort


# -- requests: encode ----------------------------------------------------------------------


def canonical_request(**overrides) -> Request:
    fields = dict(
        model="gpt-5.1",
        system=[Text("You are helpful."), Text("Answer in French.")],
        messages=[
            Message(
                "user",
                [Text("Look:"), Image("image/jpeg", data="AAAA"), Image("", url="https://x/y.png")],
            ),
            Message(
                "assistant",
                [
                    Thinking(text="think", signature="enc-ours", origin=R),
                    Thinking(text="foreign", signature="anthropic-sig", origin=Format.ANTHROPIC.value),
                    Thinking(signature="redacted-data", origin=Format.ANTHROPIC.value, redacted=True),
                    Text("Let me check."),
                    ToolCall(id="toolu_01", name="lookup", arguments={"q": "é"}),
                    ToolCall(id="toolu_02", name="raw", arguments={"_raw": "{broken"}),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult(
                        call_id="toolu_01", content=[Text("line 1"), Text("line 2")], is_error=True
                    ),
                    ToolResult(
                        call_id="toolu_02", content=[Text("pic"), Image("image/png", data="BBBB")]
                    ),
                    Text("continue"),
                ],
            ),
        ],
        tools=[
            Tool(
                name="lookup",
                description="Look up",
                parameters={"type": "object", "properties": {"q": {"type": "string"}}},
            ),
            Tool(name="raw"),
        ],
        tool_choice=ToolChoice("any", parallel=False),
        max_tokens=1000,
        temperature=0.5,
        top_p=0.8,
        top_k=40,
        stop=["END"],
        stream=True,
        reasoning=Reasoning(budget=16000),
        response_format=ResponseFormat(
            type="json_schema", schema={"type": "object"}, name="out", strict=True
        ),
        metadata={"user_id": "u1"},
    )
    fields.update(overrides)
    return Request(**fields)


def test_encode_request_golden():
    assert encode_request(canonical_request()) == {
        "model": "gpt-5.1",
        "instructions": "You are helpful.\n\nAnswer in French.",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look:"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/jpeg;base64,AAAA",
                        "detail": "auto",
                    },
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
                ],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "think"}],
                "encrypted_content": "enc-ours",
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me check."}],
            },
            {"type": "function_call", "call_id": "toolu_01", "name": "lookup", "arguments": '{"q":"é"}'},
            {"type": "function_call", "call_id": "toolu_02", "name": "raw", "arguments": "{broken"},
            {"type": "function_call_output", "call_id": "toolu_01", "output": "line 1\nline 2"},
            {
                "type": "function_call_output",
                "call_id": "toolu_02",
                "output": [
                    {"type": "input_text", "text": "pic"},
                    {"type": "input_image", "image_url": "data:image/png;base64,BBBB", "detail": "auto"},
                ],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "continue"}]},
        ],
        "store": False,
        "stream": True,
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                "strict": False,
            },
            {
                "type": "function",
                "name": "raw",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "max_output_tokens": 1000,
        "temperature": 0.5,
        "top_p": 0.8,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
    }


def test_encode_minimal_request():
    body = encode_request(Request(model="gpt-4.1", messages=[Message("user", [Text("hi")])]))
    assert body == {
        "model": "gpt-4.1",
        "instructions": "",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "store": False,
        "stream": False,
    }


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (Reasoning(effort="low"), {"effort": "low", "summary": "auto"}),
        (Reasoning(effort="xhigh"), {"effort": "xhigh", "summary": "auto"}),
        (Reasoning(effort="none"), {"effort": "none"}),
        (Reasoning(budget=0), {"effort": "none"}),
        (Reasoning(budget=1024), {"effort": "low", "summary": "auto"}),
        (Reasoning(budget=-1), {"summary": "auto"}),
        (Reasoning(effort="auto"), {"summary": "auto"}),
        (Reasoning(), None),
    ],
)
def test_encode_reasoning(reasoning, expected):
    body = encode_request(Request(model="m", reasoning=reasoning))
    assert body.get("reasoning") == expected
    assert ("include" in body) == (expected is not None)


def test_encode_includes_encrypted_reasoning_when_replaying():
    messages = [Message("assistant", [Thinking("t", signature="enc", origin=R), Text("a")])]
    assert encode_request(Request(model="m", messages=messages))["include"] == [
        "reasoning.encrypted_content"
    ]
    foreign = [Message("assistant", [Thinking("t", signature="sig", origin="anthropic"), Text("a")])]
    body = encode_request(Request(model="m", messages=foreign))
    assert "include" not in body
    assert body["input"] == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]}
    ]


def test_encode_tool_choice_variants():
    def encode(choice):
        body = encode_request(Request(model="m", tool_choice=choice))
        return body["tool_choice"], body.get("parallel_tool_calls")

    assert encode(ToolChoice("auto")) == ("auto", None)
    assert encode(ToolChoice("none")) == ("none", None)
    assert encode(ToolChoice("any", parallel=True)) == ("required", True)
    assert encode(ToolChoice("tool", name="f", parallel=False)) == (
        {"type": "function", "name": "f"},
        False,
    )


def test_encode_json_object_format():
    body = encode_request(Request(model="m", response_format=ResponseFormat(type="json_object")))
    assert body["text"] == {"format": {"type": "json_object"}}
    assert "text" not in encode_request(Request(model="m", response_format=ResponseFormat()))


def test_encode_rejects_n_greater_than_one():
    with pytest.raises(ValueError, match="n > 1"):
        encode_request(Request(model="m", n=2))
    assert encode_request(Request(model="m", n=1))["model"] == "m"


def test_codex_body():
    body = codex_body(encode_request(Request(model="gpt-5", max_tokens=100, stream=False)))
    assert body == {
        "model": "gpt-5",
        "instructions": "",
        "input": [],
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
    }
    # Idempotent, and keeps what is already there.
    assert codex_body(body) == body


def test_encoded_request_matches_sdk_param_types():
    # The SDK's own request TypedDicts, checked by pydantic, catch a missing required key.
    from openai.types.responses import ResponseInputItemParam, ToolParam

    body = encode_request(canonical_request())
    # Left out, as Codex CLI sends them: reasoning items without their `rs_` id, and assistant
    # messages as `output_text` parts without an item id (the API rejects `input_text` there).
    checked = [i for i in body["input"] if i["type"] != "reasoning" and i.get("role") != "assistant"]
    TypeAdapter(list[ResponseInputItemParam]).validate_python(checked)
    TypeAdapter(list[ToolParam]).validate_python(body["tools"])


# -- whole responses -----------------------------------------------------------------------

API_RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-5.1-2025-11-13",
    "output": [
        {
            "id": "rs_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "type": "reasoning",
            "summary": [
                {"type": "summary_text", "text": "**Checking the weather**"},
                {"type": "summary_text", "text": "I need the tool."},
            ],
            "encrypted_content": "gAAAAABoEncrypted==",
        },
        {
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Let me look that up.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        },
        {
            "id": "fc_12345xyz",
            "type": "function_call",
            "call_id": "call_12345xyz",
            "name": "get_weather",
            "arguments": '{"location":"Paris, France"}',
            "status": "completed",
        },
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 328,
        "input_tokens_details": {"cached_tokens": 256},
        "output_tokens": 52,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 380,
    },
    "user": None,
    "metadata": {},
}


def test_decode_response_golden():
    assert decode_response(API_RESPONSE) == Response(
        id="resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        model="gpt-5.1-2025-11-13",
        parts=[
            Thinking(
                text="**Checking the weather**\n\nI need the tool.",
                signature="gAAAAABoEncrypted==",
                origin=R,
            ),
            Text("Let me look that up."),
            ToolCall(id="call_12345xyz", name="get_weather", arguments={"location": "Paris, France"}),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=328, output_tokens=52, cached_tokens=256, reasoning_tokens=30),
        created=1741476542,
    )


@pytest.mark.parametrize(
    ("status", "details", "output", "expected"),
    [
        ("completed", None, [], StopReason.END),
        ("incomplete", {"reason": "max_output_tokens"}, [], StopReason.MAX_TOKENS),
        ("incomplete", {"reason": "content_filter"}, [], StopReason.REFUSAL),
        ("failed", None, [], StopReason.ERROR),
        # A call cut off by the token limit is not a finished call.
        (
            "incomplete",
            {"reason": "max_output_tokens"},
            [{"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a":'}],
            StopReason.MAX_TOKENS,
        ),
        (
            "completed",
            None,
            [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "No."}],
                }
            ],
            StopReason.REFUSAL,
        ),
    ],
)
def test_decode_response_stop_reasons(status, details, output, expected):
    body = {
        "id": "resp_1",
        "model": "m",
        "status": status,
        "incomplete_details": details,
        "output": output,
    }
    assert decode_response(body).stop_reason is expected


def test_decode_response_refusal_text_and_missing_usage():
    response = decode_response(
        {
            "id": "resp_1",
            "model": "m",
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "No."}],
                }
            ],
        }
    )
    assert response.parts == [Text("No.")]
    assert response.usage == Usage()


def canonical_response(stop=StopReason.TOOL_USE) -> Response:
    return Response(
        id="msg_01abc",
        model="claude-sonnet-4-5",
        parts=[
            Thinking(text="Think.", signature="claude-sig", origin="anthropic"),
            Thinking(text="Ours.", signature="enc-ours", origin=R),
            Text("Hello 🙂"),
            ToolCall(id="toolu_1", name="f", arguments={"a": 1}),
        ],
        stop_reason=stop,
        usage=Usage(
            input_tokens=100,
            output_tokens=20,
            cached_tokens=60,
            cache_write_tokens=10,
            reasoning_tokens=5,
        ),
        created=1700000000,
    )


def test_encode_response_golden():
    body = encode_response(canonical_response())
    assert body == {
        "id": "resp_msg_01abc",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "claude-sonnet-4-5",
        "output": [
            {
                "id": "rs_msg_01abc_0",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Think."}],
            },
            {
                "id": "rs_msg_01abc_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Ours."}],
                "encrypted_content": "enc-ours",
            },
            {
                "id": "msg_msg_01abc_2",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Hello 🙂", "annotations": [], "logprobs": []}
                ],
            },
            {
                "id": "fc_msg_01abc_3",
                "type": "function_call",
                "call_id": "toolu_1",
                "name": "f",
                "arguments": '{"a":1}',
                "status": "completed",
            },
        ],
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 10},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 120,
        },
        "metadata": {},
    }
    sdk = SDKResponse.model_validate(body)
    assert sdk.output_text == "Hello 🙂"


@pytest.mark.parametrize(
    ("stop", "fields"),
    [
        (StopReason.END, {"status": "completed", "incomplete_details": None}),
        (StopReason.STOP_SEQUENCE, {"status": "completed", "incomplete_details": None}),
        (
            StopReason.MAX_TOKENS,
            {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
        ),
        (
            StopReason.REFUSAL,
            {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
        ),
    ],
)
def test_encode_response_status(stop, fields):
    body = encode_response(canonical_response(stop))
    assert {k: body[k] for k in fields} == fields
    SDKResponse.model_validate(body)


def test_encode_response_error():
    body = encode_response(canonical_response(StopReason.ERROR))
    assert body["status"] == "failed"
    assert body["error"]["code"] == "server_error"
    SDKResponse.model_validate(body)


def test_response_round_trip():
    response = canonical_response()
    back = decode_response(encode_response(response))
    assert back.parts == [
        Thinking(text="Think."),  # the foreign signature is not ours to pass on
        Thinking(text="Ours.", signature="enc-ours", origin=R),
        Text("Hello 🙂"),
        ToolCall(id="toolu_1", name="f", arguments={"a": 1}),
    ]
    assert (back.stop_reason, back.usage, back.model, back.created) == (
        response.stop_reason,
        response.usage,
        response.model,
        response.created,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            "Rate limit reached",
        ),
        ({"error": {"type": "usage_limit_reached", "resets_in_seconds": 3600}}, "usage_limit_reached"),
        ({"detail": "Store must be set to false"}, "Store must be set to false"),
        (
            {"detail": [{"loc": ["body", "input"], "msg": "field required", "type": "missing"}]},
            "field required",
        ),
        ({"type": "error", "code": "server_error", "message": "boom", "sequence_number": 3}, "boom"),
        ({"error": "plain"}, "plain"),
        ({"id": "resp_1", "object": "response"}, None),
        (["not", "a", "dict"], None),
    ],
)
def test_error_message(body, message):
    assert error_message(body) == message


# -- stream decoding -----------------------------------------------------------------------

# Recorded-style: api.openai.com frames (event: + data:, sequence numbers, obfuscation padding),
# a reasoning item with two summary parts and encrypted content, a message, a function call.
UPSTREAM = "".join(
    f"event: {json.loads(data)['type']}\ndata: {data}\n\n"
    for data in [
        '{"type":"response.created","sequence_number":0,"response":{"id":"resp_abc","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":"x","max_output_tokens":null,"model":"gpt-5.1-codex","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":"medium","summary":"auto"},"store":false,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}',
        '{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_abc","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-5.1-codex","output":[],"usage":null}}',
        '{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}',
        '{"type":"response.reasoning_summary_part.added","sequence_number":3,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}',
        '{"type":"response.reasoning_summary_text.delta","sequence_number":4,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"**Café**","obfuscation":"x1"}',
        '{"type":"response.reasoning_summary_text.done","sequence_number":5,"item_id":"rs_1","output_index":0,"summary_index":0,"text":"**Café**"}',
        '{"type":"response.reasoning_summary_part.done","sequence_number":6,"item_id":"rs_1","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":"**Café**"}}',
        '{"type":"response.reasoning_summary_part.added","sequence_number":7,"item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":""}}',
        '{"type":"response.reasoning_summary_text.delta","sequence_number":8,"item_id":"rs_1","output_index":0,"summary_index":1,"delta":"Look it up.","obfuscation":"x2"}',
        '{"type":"response.reasoning_summary_text.done","sequence_number":9,"item_id":"rs_1","output_index":0,"summary_index":1,"text":"Look it up."}',
        '{"type":"response.reasoning_summary_part.done","sequence_number":10,"item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":"Look it up."}}',
        '{"type":"response.output_item.done","sequence_number":11,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"**Café**"},{"type":"summary_text","text":"Look it up."}],"encrypted_content":"gAAAA-enc"}}',
        '{"type":"response.output_item.added","sequence_number":12,"output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","content":[],"role":"assistant","phase":"commentary"}}',
        '{"type":"response.content_part.added","sequence_number":13,"item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}',
        '{"type":"response.output_text.delta","sequence_number":14,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hé","logprobs":[],"obfuscation":"ab"}',
        '{"type":"response.output_text.delta","sequence_number":15,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"llo 🙂","logprobs":[],"obfuscation":"cd"}',
        '{"type":"response.output_text.done","sequence_number":16,"item_id":"msg_1","output_index":1,"content_index":0,"text":"Héllo 🙂","logprobs":[]}',
        '{"type":"response.content_part.done","sequence_number":17,"item_id":"msg_1","output_index":1,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Héllo 🙂"}}',
        '{"type":"response.output_item.done","sequence_number":18,"output_index":1,"item":{"id":"msg_1","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Héllo 🙂"}],"role":"assistant"}}',
        '{"type":"response.output_item.added","sequence_number":19,"output_index":2,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_XYZ","name":"get_weather"}}',
        '{"type":"response.function_call_arguments.delta","sequence_number":20,"item_id":"fc_1","output_index":2,"delta":"{\\"city\\":","obfuscation":"q"}',
        '{"type":"response.function_call_arguments.delta","sequence_number":21,"item_id":"fc_1","output_index":2,"delta":"\\"Zürich\\"}","obfuscation":"r"}',
        '{"type":"response.function_call_arguments.done","sequence_number":22,"item_id":"fc_1","output_index":2,"arguments":"{\\"city\\":\\"Zürich\\"}"}',
        '{"type":"response.output_item.done","sequence_number":23,"output_index":2,"item":{"id":"fc_1","type":"function_call","status":"completed","arguments":"{\\"city\\":\\"Zürich\\"}","call_id":"call_XYZ","name":"get_weather"}}',
        '{"type":"response.completed","sequence_number":24,"response":{"id":"resp_abc","object":"response","created_at":1741290958,"status":"completed","error":null,"incomplete_details":null,"model":"gpt-5.1-codex","output":[],"usage":{"input_tokens":1200,"input_tokens_details":{"cached_tokens":1024},"output_tokens":90,"output_tokens_details":{"reasoning_tokens":40},"total_tokens":1290}}}',
    ]
).encode()

UPSTREAM_EVENTS = [
    Start(id="resp_abc", model="gpt-5.1-codex", created=1741290958),
    BlockStart(0, "thinking"),
    Delta(0, text="**Café**"),
    Delta(0, text="\n\nLook it up."),
    Delta(0, signature="gAAAA-enc"),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Hé"),
    Delta(1, text="llo 🙂"),
    BlockStop(1),
    BlockStart(2, "tool_call", id="call_XYZ", name="get_weather"),
    Delta(2, arguments='{"city":'),
    Delta(2, arguments='"Zürich"}'),
    BlockStop(2),
    Finish(
        StopReason.TOOL_USE,
        usage=Usage(input_tokens=1200, output_tokens=90, cached_tokens=1024, reasoning_tokens=40),
    ),
]


def decode_all(data: bytes, chunks: list[int] | None = None) -> list:
    decoder = stream_decoder()
    events: list = []
    if chunks is None:
        events += decoder.feed(data)
    else:
        start = 0
        for end in chunks:
            events += decoder.feed(data[start:end])
            start = end
        events += decoder.feed(data[start:])
    return events + decoder.close()


def check_invariants(events: list) -> None:
    """Start first; blocks do not interleave; deltas only inside their block; one terminal, last."""
    assert events, "no events"
    terminal = events[-1]
    assert isinstance(terminal, (Finish, StreamError))
    assert not any(isinstance(e, (Finish, StreamError)) for e in events[:-1])
    body = events[:-1]
    if body:
        assert isinstance(body[0], Start)
        assert not any(isinstance(e, Start) for e in body[1:])
    open_block = None
    seen: list[int] = []
    for event in body[1:]:
        if isinstance(event, BlockStart):
            assert open_block is None
            assert event.index not in seen and (not seen or event.index > seen[-1])
            open_block = event.index
            seen.append(event.index)
        elif isinstance(event, Delta):
            assert event.index == open_block
        elif isinstance(event, BlockStop):
            assert event.index == open_block
            open_block = None
    assert open_block is None


def test_stream_decode_golden():
    events = decode_all(UPSTREAM)
    assert events == UPSTREAM_EVENTS
    check_invariants(events)


def test_stream_decode_without_event_lines_with_done_and_keepalives():
    frames = UPSTREAM.decode().split("\n\n")
    lines = [f.split("\n", 1)[1] for f in frames if f]
    body = ": keep-alive\n\n" + "\n\n".join(lines) + "\n\ndata: [DONE]\n\n"
    assert decode_all(body.replace("\n", "\r\n").encode()) == UPSTREAM_EVENTS
    assert decode_all(body.encode()) == UPSTREAM_EVENTS


def test_stream_decode_every_split_point():
    # Includes splits inside "é", "ü" and "🙂" and inside `data:` lines.
    for cut in range(1, len(UPSTREAM)):
        assert decode_all(UPSTREAM, [cut]) == UPSTREAM_EVENTS, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(UPSTREAM)), max_size=40))
def test_stream_decode_random_split_points(cuts):
    assert decode_all(UPSTREAM, sorted(cuts)) == UPSTREAM_EVENTS


def test_stream_decode_byte_by_byte():
    decoder = stream_decoder()
    events: list = []
    for i in range(len(UPSTREAM)):
        events += decoder.feed(UPSTREAM[i : i + 1])
    assert events + decoder.close() == UPSTREAM_EVENTS


def frames(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


CREATED = {
    "type": "response.created",
    "sequence_number": 0,
    "response": {"id": "resp_9", "model": "gpt-5", "created_at": 5, "output": []},
}
TEXT_ADDED = {
    "type": "response.output_item.added",
    "output_index": 0,
    "item": {
        "id": "msg_9",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    },
}
TEXT_DELTA = {
    "type": "response.output_text.delta",
    "item_id": "msg_9",
    "output_index": 0,
    "content_index": 0,
    "delta": "partial",
}


def test_stream_decode_incomplete_max_tokens():
    events = decode_all(
        frames(
            CREATED,
            TEXT_ADDED,
            TEXT_DELTA,
            {
                "type": "response.incomplete",
                "response": {
                    "id": "resp_9",
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "usage": {"input_tokens": 3, "output_tokens": 16},
                },
            },
        )
    )
    assert events == [
        Start(id="resp_9", model="gpt-5", created=5),
        BlockStart(0, "text"),
        Delta(0, text="partial"),
        BlockStop(0),
        Finish(StopReason.MAX_TOKENS, usage=Usage(input_tokens=3, output_tokens=16)),
    ]


def test_stream_decode_content_filter_is_refusal():
    events = decode_all(
        frames(
            CREATED,
            {
                "type": "response.incomplete",
                "response": {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
            },
        )
    )
    assert events[-1] == Finish(StopReason.REFUSAL, usage=None)


def test_stream_decode_failed():
    events = decode_all(
        frames(
            CREATED,
            TEXT_ADDED,
            TEXT_DELTA,
            {
                "type": "response.failed",
                "response": {
                    "id": "resp_9",
                    "status": "failed",
                    "error": {"code": "server_error", "message": "The model crashed"},
                },
            },
        )
    )
    assert events[-2:] == [BlockStop(0), StreamError("The model crashed", status=500)]
    check_invariants(events)


def test_stream_decode_error_event():
    events = decode_all(
        frames(
            CREATED,
            {
                "type": "error",
                "code": "rate_limit_exceeded",
                "message": "Slow down",
                "param": None,
                "sequence_number": 1,
            },
        )
    )
    assert events == [Start(id="resp_9", model="gpt-5", created=5), StreamError("Slow down", status=429)]


def test_stream_decode_ended_early():
    events = decode_all(frames(CREATED, TEXT_ADDED, TEXT_DELTA))
    assert events == [
        Start(id="resp_9", model="gpt-5", created=5),
        BlockStart(0, "text"),
        Delta(0, text="partial"),
        BlockStop(0),
        StreamError("upstream stream ended early"),
    ]


def test_stream_decode_last_frame_without_blank_line():
    completed = {"type": "response.completed", "response": {"status": "completed"}}
    data = frames(CREATED, completed)[:-2]
    assert decode_all(data)[-1] == Finish(StopReason.END, usage=None)


def test_stream_decode_ignores_unknown_events_and_after_terminal():
    events = decode_all(
        frames(
            {"type": "codex.rate_limits", "primary": {"used_percent": 10}},
            CREATED,
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"id": "ws_1", "type": "web_search_call", "status": "in_progress"},
            },
            {"type": "response.web_search_call.searching", "output_index": 0, "item_id": "ws_1"},
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {"id": "ws_1", "type": "web_search_call", "status": "completed"},
            },
            {**TEXT_ADDED, "output_index": 1},
            {**TEXT_DELTA, "output_index": 1},
            {"type": "response.output_text.annotation.added", "output_index": 1, "annotation": {}},
            {"type": "response.completed", "response": {"status": "completed"}},
            {**TEXT_DELTA, "output_index": 1},
        )
    )
    assert events == [
        Start(id="resp_9", model="gpt-5", created=5),
        BlockStart(0, "text"),
        Delta(0, text="partial"),
        BlockStop(0),
        Finish(StopReason.END, usage=None),
    ]


def test_stream_decode_items_without_deltas():
    # Some upstreams put the whole item in `output_item.done` (or `added`) without deltas.
    events = decode_all(
        frames(
            CREATED,
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"id": "rs_1", "type": "reasoning", "summary": []},
            },
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "id": "rs_1",
                    "type": "reasoning",
                    "summary": [{"type": "summary_text", "text": "S"}],
                },
            },
            {
                "type": "response.output_item.done",
                "output_index": 1,
                "item": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "T"}],
                },
            },
            {
                "type": "response.output_item.added",
                "output_index": 2,
                "item": {
                    "id": "fc_1",
                    "type": "function_call",
                    "call_id": "c",
                    "name": "f",
                    "arguments": '{"a":1}',
                },
            },
            {
                "type": "response.output_item.done",
                "output_index": 2,
                "item": {
                    "id": "fc_1",
                    "type": "function_call",
                    "call_id": "c",
                    "name": "f",
                    "arguments": '{"a":1}',
                },
            },
            {"type": "response.completed", "response": {"status": "completed"}},
        )
    )
    assert events == [
        Start(id="resp_9", model="gpt-5", created=5),
        BlockStart(0, "thinking"),
        Delta(0, text="S"),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, text="T"),
        BlockStop(1),
        BlockStart(2, "tool_call", id="c", name="f"),
        Delta(2, arguments='{"a":1}'),
        BlockStop(2),
        Finish(StopReason.TOOL_USE, usage=None),
    ]


def test_stream_decode_reasoning_text_and_refusal():
    events = decode_all(
        frames(
            CREATED,
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"id": "rs_1", "type": "reasoning", "summary": []},
            },
            {
                "type": "response.reasoning_text.delta",
                "output_index": 0,
                "item_id": "rs_1",
                "content_index": 0,
                "delta": "raw",
            },
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "id": "rs_1",
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "raw cot"}],
                },
            },
            {**TEXT_ADDED, "output_index": 1},
            {
                "type": "response.content_part.added",
                "output_index": 1,
                "item_id": "msg_9",
                "content_index": 0,
                "part": {"type": "refusal", "refusal": ""},
            },
            {
                "type": "response.refusal.delta",
                "output_index": 1,
                "item_id": "msg_9",
                "content_index": 0,
                "delta": "I can't.",
            },
            {"type": "response.completed", "response": {"status": "completed"}},
        )
    )
    assert events[1:] == [
        BlockStart(0, "thinking"),
        Delta(0, text="raw"),
        Delta(0, text=" cot"),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, text="I can't."),
        BlockStop(1),
        Finish(StopReason.REFUSAL, usage=None),
    ]


def test_stream_decode_nothing_at_all():
    assert decode_all(b"") == [StreamError("upstream stream ended early")]


# -- stream encoding -----------------------------------------------------------------------

CANONICAL_STREAM = [
    Start(id="msg_01XYZ", model="claude-sonnet-4-5", created=1700000000),
    BlockStart(0, "thinking"),
    Delta(0, text="Let me "),
    Delta(0, text="think é."),
    Delta(0, signature="foreign-signature"),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Hello"),
    Delta(1, text=" 🙂"),
    BlockStop(1),
    BlockStart(2, "tool_call", id="toolu_01A", name="get_weather"),
    Delta(2, arguments='{"city":'),
    Delta(2, arguments='"Paris"}'),
    BlockStop(2),
    BlockStart(3, "tool_call", id="toolu_01B", name="now"),
    BlockStop(3),
    Finish(
        StopReason.TOOL_USE,
        usage=Usage(input_tokens=50, output_tokens=30, cached_tokens=20, reasoning_tokens=7),
    ),
]


def encode_all(events: list, request: Request | None = None, **kwargs) -> bytes:
    encoder = StreamEncoder(request or Request(model="client-model", stream=True), True, **kwargs)
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


def parse_sse(data: bytes) -> list[tuple[str, dict]]:
    reader = SSEReader()
    return [(e.event, json.loads(e.data)) for e in reader.feed(data) + reader.close()]


def sdk_stream(data: bytes):
    """Run the bytes through the SDK's own `client.responses.stream(...)` machinery."""

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://upstream.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.responses.stream(model="gpt-5", input="hi") as stream:
        events = list(stream)
        return events, stream.get_final_response()


def test_stream_encode_event_sequence():
    parsed = parse_sse(encode_all(CANONICAL_STREAM))
    assert [data["type"] for _, data in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    for number, (event, data) in enumerate(parsed):
        assert event == data["type"]
        assert data["sequence_number"] == number
        EVENTS.validate_python(data)  # strict pydantic validation against the SDK's union
    created = parsed[0][1]["response"]
    assert (
        created["id"] == "resp_msg_01XYZ"
        and created["status"] == "in_progress"
        and created["output"] == []
    )
    assert parsed[2][1]["item"] == {"id": "rs_msg_01XYZ_0", "type": "reasoning", "summary": []}
    assert parsed[16][1] == {
        "type": "response.output_item.added",
        "output_index": 2,
        "item": {
            "id": "fc_msg_01XYZ_2",
            "type": "function_call",
            "call_id": "toolu_01A",
            "name": "get_weather",
            "arguments": "",
            "status": "in_progress",
        },
        "sequence_number": 16,
    }
    assert parsed[22][1]["delta"] == "{}"  # a call without arguments still gets an object
    completed = parsed[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["usage"] == {
        "input_tokens": 50,
        "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 7},
        "total_tokens": 80,
    }
    # The foreign signature is dropped: it would be replayed to OpenAI as encrypted content.
    assert "encrypted_content" not in completed["output"][0]


def test_stream_encode_through_sdk_accumulator():
    events, final = sdk_stream(encode_all(CANONICAL_STREAM))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text_deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [e.snapshot for e in text_deltas] == ["Hello", "Hello 🙂"]
    assert final.id == "resp_msg_01XYZ"
    assert final.output_text == "Hello 🙂"
    reasoning, message, call, bare_call = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Let me think é."
    assert message.type == "message" and message.status == "completed"
    assert (call.type, call.call_id, call.name, call.arguments) == (
        "function_call",
        "toolu_01A",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert bare_call.arguments == "{}"
    assert final.usage.input_tokens_details.cached_tokens == 20
    assert final.usage.output_tokens_details.reasoning_tokens == 7


def test_stream_encode_keeps_own_signatures_when_told():
    parsed = parse_sse(encode_all(CANONICAL_STREAM, origin=R))
    assert parsed[-1][1]["response"]["output"][0]["encrypted_content"] == "foreign-signature"


@pytest.mark.parametrize(
    ("stop", "kind", "details"),
    [
        (StopReason.MAX_TOKENS, "response.incomplete", {"reason": "max_output_tokens"}),
        (StopReason.REFUSAL, "response.incomplete", {"reason": "content_filter"}),
        (StopReason.END, "response.completed", None),
        (StopReason.STOP_SEQUENCE, "response.completed", None),
    ],
)
def test_stream_encode_terminal_statuses(stop, kind, details):
    data = encode_all(
        [Start(id="r", model="m"), BlockStart(0, "text"), Delta(0, text="cut"), Finish(stop)]
    )
    parsed = parse_sse(data)
    assert parsed[-1][1]["type"] == kind
    assert parsed[-1][1]["response"]["incomplete_details"] == details
    assert parsed[-1][1]["response"]["usage"] is None
    # The open block was closed before the terminal event.
    assert [d["type"] for _, d in parsed].count("response.output_item.done") == 1
    for _, event in parsed:
        EVENTS.validate_python(event)
    assert sdk_stream_events(data)[-1].type == kind


def sdk_stream_events(data: bytes) -> list:
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://upstream.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.responses.stream(model="gpt-5", input="hi") as stream:
        return list(stream)


def test_stream_encode_error():
    data = encode_all(
        [
            Start(id="r", model="m"),
            BlockStart(0, "text"),
            Delta(0, text="so far"),
            BlockStop(0),
            BlockStart(1, "text"),
            Delta(1, text="half"),
            StreamError("upstream exploded", status=503),
            Delta(1, text="ignored"),
        ]
    )
    parsed = parse_sse(data)
    assert [d["type"] for _, d in parsed][-2:] == ["response.output_text.delta", "response.failed"]
    failed = parsed[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "upstream exploded"}
    assert [item["content"][0]["text"] for item in failed["output"]] == ["so far"]
    for _, event in parsed:
        EVENTS.validate_python(event)
    assert sdk_stream_events(data)[-1].type == "response.failed"


def test_stream_encode_rate_limit_error_and_close_is_idempotent():
    encoder = stream_encoder(Request(model="m"), True)
    data = encoder.encode(StreamError("quota", status=429))
    parsed = parse_sse(data)
    assert [d["type"] for _, d in parsed] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert parsed[-1][1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert parsed[-1][1]["response"]["model"] == "m"
    assert encoder.close() == b""
    assert encoder.encode(Finish(StopReason.END)) == b""


def test_stream_encode_close_without_terminal_fails_the_response():
    encoder = stream_encoder(Request(model="m"), True)
    encoder.encode(Start(id="resp_1", model="m"))
    encoder.encode(BlockStart(0, "text"))
    tail = parse_sse(encoder.close())
    assert [d["type"] for _, d in tail] == ["response.failed"]
    assert encoder.close() == b""


def test_stream_encode_finish_once():
    encoder = stream_encoder(Request(model="m"), True)
    out = encoder.encode(Start(id="resp_1", model="m")) + encoder.encode(Finish(StopReason.END))
    assert [d["type"] for _, d in parse_sse(out)][-1] == "response.completed"
    assert encoder.encode(Finish(StopReason.END)) == b"" and encoder.close() == b""


def test_stream_encode_echoes_request_settings():
    request = Request(
        model="m",
        tool_choice=ToolChoice("tool", name="f", parallel=False),
        max_tokens=9,
        temperature=0.3,
    )
    created = parse_sse(encode_all([Start(id="resp_1", model="")], request))[0][1]["response"]
    assert created["model"] == "m"
    assert created["tool_choice"] == {"type": "function", "name": "f"}
    assert created["parallel_tool_calls"] is False
    assert (created["max_output_tokens"], created["temperature"]) == (9, 0.3)


def test_stream_accumulated_equals_non_stream_translation():
    response = Response(
        id="msg_01XYZ",
        model="claude-sonnet-4-5",
        parts=[
            Thinking("Let me think é."),
            Text("Hello 🙂"),
            ToolCall("toolu_01A", "get_weather", {"city": "Paris"}),
            ToolCall("toolu_01B", "now", {}),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=50, output_tokens=30, cached_tokens=20, reasoning_tokens=7),
        created=1700000000,
    )
    whole = encode_response(response)
    streamed = parse_sse(encode_all(CANONICAL_STREAM, Request(model="claude-sonnet-4-5")))[-1][1][
        "response"
    ]
    for key in ("id", "status", "output", "usage", "created_at", "model", "incomplete_details"):
        assert streamed[key] == whole[key], key


def test_stream_round_trip_through_own_decoder():
    events = decode_all(encode_all(CANONICAL_STREAM, origin=R))
    expected = [
        Start(id="resp_msg_01XYZ", model="claude-sonnet-4-5", created=1700000000),
        *CANONICAL_STREAM[1:],
    ]
    expected.insert(-2, Delta(3, arguments="{}"))  # the encoder's object for an argument-less call
    assert events == expected


# -- round trips (hypothesis) --------------------------------------------------------------

texts = st.text(min_size=1, max_size=12)
ids = st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True)
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
images = st.builds(
    Image,
    media_type=st.sampled_from(["image/png", "image/jpeg"]),
    data=st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True),
) | st.builds(
    Image,
    media_type=st.just(""),
    url=st.from_regex(r"https://example\.com/[a-z]{1,8}\.png", fullmatch=True),
)
tool_results = st.builds(
    ToolResult,
    call_id=ids,
    content=st.one_of(
        st.lists(st.builds(Text, texts), max_size=1),
        st.lists(st.builds(Text, texts) | images, min_size=1, max_size=3).filter(
            lambda c: any(isinstance(p, Image) for p in c)
        ),
    ),
)
user_parts = st.lists(st.builds(Text, texts) | images | tool_results, min_size=1, max_size=4)
assistant_parts = st.lists(
    st.builds(Text, texts)
    | st.builds(
        ToolCall,
        id=ids,
        name=names,
        arguments=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    )
    | st.builds(
        Thinking,
        text=st.text(max_size=10),
        signature=st.text(min_size=1, max_size=10),
        origin=st.just(R),
    ),
    min_size=1,
    max_size=4,
)
conversations = st.lists(
    st.builds(Message, role=st.just("user"), parts=user_parts)
    | st.builds(Message, role=st.just("assistant"), parts=assistant_parts),
    max_size=5,
)


def normalise(messages: list[Message]) -> list[Message]:
    """What a Responses round trip keeps: consecutive same-role messages merge, and a tool
    result's text-only content becomes one string."""
    merged: list[Message] = []
    for message in messages:
        parts = []
        for part in message.parts:
            if isinstance(part, ToolResult) and not any(isinstance(c, Image) for c in part.content):
                text = "\n".join(c.text for c in part.content)
                part = ToolResult(part.call_id, [Text(text)] if text else [])
            parts.append(part)
        if merged and merged[-1].role == message.role:
            merged[-1].parts.extend(parts)
        else:
            merged.append(Message(message.role, parts))
    return merged


def strip_names(messages: list[Message]) -> list[Message]:
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolResult):
                part.name = None
    return messages


@settings(max_examples=150, deadline=None)
@given(conversations, st.lists(st.builds(Text, texts), max_size=2))
def test_request_round_trip(messages, system):
    request = Request(model="m", messages=messages, system=system)
    back = decode_request(encode_request(request))
    assert strip_names(back.messages) == normalise(messages)
    assert "\n\n".join(t.text for t in back.system) == "\n\n".join(t.text for t in system)


blocks = st.lists(
    st.tuples(
        st.sampled_from(["text", "thinking", "tool_call"]),
        st.lists(st.text(min_size=1, max_size=6), max_size=4),
        st.none() | st.text(min_size=1, max_size=8),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(blocks, st.sampled_from(list(StopReason)))
def test_stream_round_trip_property(spec, stop):
    events: list = [Start(id="resp_x", model="m", created=1)]
    for index, (kind, fragments, signature) in enumerate(spec):
        events.append(
            BlockStart(
                index,
                kind,
                id=f"call_{index}" if kind == "tool_call" else None,
                name="f" if kind == "tool_call" else None,
            )
        )
        for fragment in fragments:
            events.append(
                Delta(index, arguments=fragment) if kind == "tool_call" else Delta(index, text=fragment)
            )
        if kind == "thinking" and signature:
            events.append(Delta(index, signature=signature))
        if kind == "tool_call" and not fragments:
            events.append(Delta(index, arguments="{}"))  # what the encoder adds
        events.append(BlockStop(index))
    events.append(Finish(stop, usage=Usage(input_tokens=3, output_tokens=4)))

    data = encode_all(events, origin=R)
    for _, event in parse_sse(data):
        EVENTS.validate_python(event)
    decoded = decode_all(data)
    check_invariants(decoded)
    if stop is StopReason.ERROR:
        assert decoded[:-1] == events[:-1]
        assert isinstance(decoded[-1], StreamError)
        return
    expected_stop = stop
    if stop in (StopReason.END, StopReason.STOP_SEQUENCE, StopReason.TOOL_USE):
        has_call = any(kind == "tool_call" for kind, _, _ in spec)
        expected_stop = StopReason.TOOL_USE if has_call else StopReason.END
    assert decoded == events[:-1] + [Finish(expected_stop, usage=Usage(input_tokens=3, output_tokens=4))]


def accumulate(events: list) -> Response:
    """What the proxy does for a non-stream client of a stream-only upstream (Codex)."""
    start = events[0]
    response = Response(id=start.id, model=start.model, created=start.created)
    blocks: dict[int, Text | Thinking | ToolCall] = {}
    arguments: dict[int, str] = {}
    for event in events[1:]:
        if isinstance(event, BlockStart):
            if event.kind == "tool_call":
                blocks[event.index] = ToolCall(id=event.id or "", name=event.name or "")
                arguments[event.index] = ""
            else:
                blocks[event.index] = Text("") if event.kind == "text" else Thinking()
            response.parts.append(blocks[event.index])
        elif isinstance(event, Delta):
            part = blocks[event.index]
            if isinstance(part, ToolCall):
                arguments[event.index] += event.arguments
            else:
                part.text += event.text
            if event.signature and isinstance(part, Thinking):
                part.signature, part.origin = event.signature, R
        elif isinstance(event, BlockStop) and event.index in arguments:
            blocks[event.index].arguments = json.loads(arguments[event.index])  # type: ignore[union-attr]
        elif isinstance(event, Finish):
            response.stop_reason = event.stop_reason
            response.usage = event.usage or Usage()
    return response


def test_decoded_stream_carries_what_a_non_stream_answer_needs():
    completed = next(
        json.loads(e.data)["response"]
        for e in SSEReader().feed(UPSTREAM)
        if e.event == "response.completed"
    )
    items = [
        json.loads(e.data)["item"]
        for e in SSEReader().feed(UPSTREAM)
        if e.event == "response.output_item.done"
    ]
    whole = decode_response({**completed, "output": items})
    assert accumulate(decode_all(UPSTREAM)) == whole


def test_stream_encode_uses_up_front_usage_and_tolerates_a_missing_start():
    usage = Usage(input_tokens=12)
    data = encode_all([Start(id="r", model="m", usage=usage), Finish(StopReason.END)])
    assert parse_sse(data)[-1][1]["response"]["usage"]["input_tokens"] == 12
    parsed = parse_sse(encode_all([BlockStart(0, "text"), Delta(0, text="x"), Finish(StopReason.END)]))
    assert [d["sequence_number"] for _, d in parsed] == list(range(len(parsed)))
    assert parsed[0][1]["type"] == "response.created"
    assert parsed[-1][1]["response"]["output"][0]["content"][0]["text"] == "x"
