"""translators.gemini: Gemini generateContent (and the Code Assist envelope) <-> canonical.

Golden inputs follow the shapes Google documents for the REST API (camelCase, as on
ai.google.dev) and what the google-genai SDK really sends (captured through a mock transport,
which shows snake_case inside `thinkingConfig`). Encoder outputs are checked as exact dicts and
parsed with the SDK's own types and stream machinery.
"""

from __future__ import annotations

import base64
import itertools
import json
import random

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from translators import gemini
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

# Thought signatures are base64 of opaque bytes (the SDK types decode them).
SIG_A = base64.b64encode(b"\n$\x01\x8f=k_\x88C\xde\xd2\xb3\xd1\x07\xb7\xa9i\xb4p\x1f^%\xfd\xe7").decode()
SIG_B = base64.b64encode(b"\n\xad\x02\x01\x8f=k_X\xdb\x1c\x19\xdc\x99\x19]\x1a\x1c\xda\x59").decode()
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


# -- Code Assist envelope ------------------------------------------------------------------


def test_codec_surface():
    assert gemini.CODEC.format is Format.GEMINI
    assert gemini.CODEC.decode_request is gemini.decode_request
    assert gemini.CODEC.stream_encoder is gemini.stream_encoder


def test_wrap_code_assist():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert gemini.wrap_code_assist(body, "models/gemini-2.5-pro", "proj-123") == {
        "model": "gemini-2.5-pro",
        "project": "proj-123",
        "request": body,
    }


def test_unwrap_code_assist():
    inner = {"candidates": [], "modelVersion": "gemini-2.5-pro"}
    assert gemini.unwrap_code_assist({"response": inner, "traceId": "t1"}) is inner
    plain = {"candidates": []}
    assert gemini.unwrap_code_assist(plain) is plain


# -- decode_request ------------------------------------------------------------------------

DOCUMENTED_REQUEST = {
    "systemInstruction": {"parts": [{"text": "You are a travel assistant."}, {"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "What's the weather in both cities on this postcard?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/postcard-back.jpg"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Reading the postcard", "thought": True},
                {"text": "", "thoughtSignature": SIG_B},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": SIG_A,
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 18}}}},
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"error": "weather service timed out"},
                        "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}],
                    }
                },
            ],
        },
        {"role": "model", "parts": [{"text": "Paris is 18°C; London timed out."}]},
        {"role": "user", "parts": [{"text": "Try London again."}]},
    ],
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parametersJsonSchema": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
                {
                    "name": "book_hotel",
                    "description": "Book a hotel",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING"},
                            "nights": {"type": "INTEGER", "nullable": True},
                        },
                        "required": ["city"],
                        "propertyOrdering": ["city", "nights"],
                    },
                },
            ]
        },
        {"googleSearch": {}},
    ],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "generationConfig": {
        "maxOutputTokens": 2048,
        "temperature": 0.4,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["END"],
        "candidateCount": 1,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"answer": {"type": "string"}}},
        "thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": True},
    },
}


def test_decode_documented_request():
    request = gemini.decode_request(DOCUMENTED_REQUEST)
    assert request == Request(
        model="",
        system=[Text("You are a travel assistant."), Text("Be brief.")],
        messages=[
            Message(
                "user",
                [
                    Text("What's the weather in both cities on this postcard?"),
                    Image(media_type="image/png", data=PNG_B64),
                    Image(media_type="image/jpeg", url="https://example.com/postcard-back.jpg"),
                ],
            ),
            Message(
                "assistant",
                [
                    Thinking("Reading the postcard", signature=SIG_B, origin="gemini"),
                    ToolCall(
                        "call_get_weather_0",
                        "get_weather",
                        {"city": "Paris"},
                        signature=SIG_A,
                        origin="gemini",
                    ),
                    ToolCall("call_get_weather_1", "get_weather", {"city": "London"}, origin="gemini"),
                ],
            ),
            Message(
                "user",
                [
                    ToolResult("call_get_weather_0", [Text('{"temp_c":18}')], name="get_weather"),
                    ToolResult(
                        "call_get_weather_1",
                        [Text("weather service timed out"), Image(media_type="image/png", data=PNG_B64)],
                        is_error=True,
                        name="get_weather",
                    ),
                ],
            ),
            Message("assistant", [Text("Paris is 18°C; London timed out.")]),
            Message("user", [Text("Try London again.")]),
        ],
        tools=[
            Tool(
                "get_weather",
                "Current weather for a city",
                {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            ),
            Tool(
                "book_hotel",
                "Book a hotel",
                {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "nights": {"type": ["integer", "null"]}},
                    "required": ["city"],
                },
            ),
        ],
        tool_choice=ToolChoice(mode="tool", name="get_weather"),
        max_tokens=2048,
        temperature=0.4,
        top_p=0.9,
        top_k=40,
        stop=["END"],
        n=1,
        reasoning=Reasoning(budget=4096),
        response_format=ResponseFormat(
            type="json_schema", schema={"type": "object", "properties": {"answer": {"type": "string"}}}
        ),
    )


def test_decode_code_assist_request():
    body = gemini.wrap_code_assist(
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "gemini-2.5-flash", "p"
    )
    body["user_prompt_id"] = "abc"
    request = gemini.decode_request(body)
    assert request.model == "gemini-2.5-flash"
    assert request.messages == [Message("user", [Text("hi")])]


def _capture_sdk_request(contents, config) -> dict:
    """The JSON body the google-genai SDK really sends for `generate_content`."""
    captured: dict = {}

    def handler(request: httpx.Request) -> httpx.Response:
        captured["body"] = json.loads(request.content)
        body = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}]
        }
        return httpx.Response(200, json=body)

    client = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(httpx_client=httpx.Client(transport=httpx.MockTransport(handler))),
    )
    client.models.generate_content(model="gemini-2.5-flash", contents=contents, config=config)
    return captured["body"]


def test_decode_what_the_sdk_sends():
    body = _capture_sdk_request(
        [
            types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")]),
            types.Content(
                role="model",
                parts=[
                    types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}))
                ],
            ),
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="get_weather", response={"output": "sunny"})],
            ),
        ],
        types.GenerateContentConfig(
            system_instruction="Be brief.",
            max_output_tokens=100,
            stop_sequences=["STOP"],
            thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True),
            tools=[
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name="get_weather",
                            description="Weather",
                            parameters_json_schema={
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                            },
                        )
                    ]
                )
            ],
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="AUTO")),
            response_mime_type="application/json",
        ),
    )
    request = gemini.decode_request(body)
    assert request.system == [Text("Be brief.")]
    assert request.max_tokens == 100
    assert request.stop == ["STOP"]
    assert request.reasoning == Reasoning(budget=1024)
    assert request.tools == [
        Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})
    ]
    assert request.tool_choice == ToolChoice(mode="auto")
    assert request.response_format == ResponseFormat(type="json_object")
    assert request.messages == [
        Message("user", [Text("Weather in Paris?")]),
        Message(
            "assistant", [ToolCall("call_get_weather_0", "get_weather", {"city": "Paris"}, origin="gemini")]
        ),
        Message("user", [ToolResult("call_get_weather_0", [Text("sunny")], name="get_weather")]),
    ]


def test_decode_keeps_given_ids_and_pairs_results_by_name_in_order():
    body = {
        "contents": [
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a", "args": {}}},
                    {"functionCall": {"id": "fc-7", "name": "b", "args": {}}},
                    {"functionCall": {"name": "a", "args": {"n": 2}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "b", "response": {"output": "B"}}},
                    {"functionResponse": {"name": "a", "response": {"output": "A1"}}},
                    {"functionResponse": {"name": "a", "response": {"output": "A2"}}},
                    {"functionResponse": {"name": "ghost", "response": {"x": 1, "y": 2}}},
                ],
            },
        ]
    }
    calls, results = gemini.decode_request(body).messages
    assert [c.id for c in calls.parts] == ["call_a_0", "fc-7", "call_a_2"]
    assert [(r.call_id, r.content) for r in results.parts] == [
        ("fc-7", [Text("B")]),
        ("call_a_0", [Text("A1")]),
        ("call_a_2", [Text("A2")]),
        ("call_ghost_3", [Text('{"x":1,"y":2}')]),
    ]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"thinkingLevel": "HIGH"}, Reasoning(effort="high")),
        ({"thinking_level": "low", "include_thoughts": True}, Reasoning(effort="low")),
        ({"thinkingBudget": 0}, Reasoning(budget=0)),
        ({"thinkingBudget": -1}, Reasoning(budget=-1)),
        ({"includeThoughts": True}, Reasoning(budget=-1)),
        ({"includeThoughts": False}, None),
        ({}, None),
    ],
)
def test_decode_thinking_config(config, expected):
    body = {"contents": [], "generationConfig": {"thinkingConfig": config}}
    assert gemini.decode_request(body).reasoning == expected


@pytest.mark.parametrize(
    ("calling", "expected"),
    [
        ({"mode": "AUTO"}, ToolChoice(mode="auto")),
        ({"mode": "NONE"}, ToolChoice(mode="none")),
        ({"mode": "ANY"}, ToolChoice(mode="any")),
        ({"mode": "ANY", "allowedFunctionNames": ["a", "b"]}, ToolChoice(mode="any")),
        ({"mode": "ANY", "allowed_function_names": ["a"]}, ToolChoice(mode="tool", name="a")),
        ({"mode": "VALIDATED"}, ToolChoice(mode="auto")),
    ],
)
def test_decode_tool_choice(calling, expected):
    body = {"contents": [], "tool_config": {"function_calling_config": calling}}
    assert gemini.decode_request(body).tool_choice == expected


def test_decode_response_schema_in_openapi_form():
    body = {
        "contents": [],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "ARRAY",
                "items": {"type": "STRING", "format": "enum", "enum": ["a", "b"]},
            },
        },
    }
    assert gemini.decode_request(body).response_format == ResponseFormat(
        type="json_schema", schema={"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}
    )


def test_decode_signature_on_a_plain_text_part():
    # Gemini 3 puts the signature on the answer's part when there are no thought parts.
    body = {"contents": [{"role": "model", "parts": [{"text": "Hello", "thoughtSignature": SIG_A}]}]}
    assert gemini.decode_request(body).messages == [
        Message("assistant", [Thinking("", signature=SIG_A, origin="gemini"), Text("Hello")])
    ]


# -- encode_request ------------------------------------------------------------------------


def _foreign_conversation(model: str, reasoning: Reasoning | None) -> Request:
    """A conversation as an OpenAI or Anthropic client would have produced it."""
    return Request(
        model=model,
        system=[Text("You are a travel assistant."), Text("")],
        messages=[
            Message(
                "user",
                [
                    Text("Weather on this postcard?"),
                    Image(media_type="image/png", data=PNG_B64),
                    Image(media_type="", url="https://example.com/card.jpeg?size=large"),
                    Image(media_type="", url=f"data:image/webp;base64,{PNG_B64}"),
                ],
            ),
            Message(
                "assistant",
                [
                    Thinking("claude thoughts", signature="EqQBCkgIARABGAIi", origin="anthropic"),
                    Text(""),
                    Text("Checking both."),
                ],
            ),
            Message(
                "assistant",
                [
                    ToolCall("toolu_01", "get_weather", {"city": "Paris"}, origin="anthropic"),
                    ToolCall("toolu_02", "get_weather", {"city": "London"}),
                ],
            ),
            # Results arrive out of order and in separate messages (OpenAI `tool` messages).
            Message(
                "user",
                [
                    ToolResult(
                        "toolu_02",
                        [Text("timed out"), Image(media_type="image/png", data=PNG_B64)],
                        is_error=True,
                    )
                ],
            ),
            Message("user", [Text("Also, London?"), ToolResult("toolu_01", [Text("18C")])]),
        ],
        tools=[
            Tool(
                "get_weather",
                "Current weather",
                {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "minLength": 1, "examples": ["Paris"]},
                        "unit": {"type": ["string", "null"], "enum": ["c", "f", None], "default": "c"},
                    },
                    "required": ["city"],
                    "additionalProperties": False,
                },
            ),
            Tool("now", "The time", {"type": "object", "properties": {}}),
        ],
        tool_choice=ToolChoice(mode="tool", name="get_weather", parallel=False),
        max_tokens=1000,
        temperature=0.2,
        top_p=0.8,
        top_k=20,
        stop=["END"],
        reasoning=reasoning,
        response_format=ResponseFormat(
            type="json_schema",
            schema={"type": "object", "properties": {"a": {"type": "string"}}},
            name="x",
            strict=True,
        ),
        n=1,
        stream=True,
    )


def test_encode_request_for_gemini_3():
    body = gemini.encode_request(_foreign_conversation("gemini-3-pro-preview", Reasoning(effort="low")))
    skip = gemini.SKIP_SIGNATURE
    assert body == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather on this postcard?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                    {
                        "fileData": {
                            "fileUri": "https://example.com/card.jpeg?size=large",
                            "mimeType": "image/jpeg",
                        }
                    },
                    {"inlineData": {"mimeType": "image/webp", "data": PNG_B64}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking both."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": skip,
                    },
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "London"}},
                        "thoughtSignature": skip,
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"error": "timed out"}}},
                    {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                    {"text": "Also, London?"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "You are a travel assistant."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string", "minLength": 1},
                                "unit": {"type": "string", "enum": ["c", "f"], "nullable": True},
                            },
                            "required": ["city"],
                        },
                    },
                    {"name": "now", "description": "The time"},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "maxOutputTokens": 1000,
            "temperature": 0.2,
            "topP": 0.8,
            "topK": 20,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": True},
        },
    }


def test_encoded_request_parses_as_sdk_types():
    body = gemini.encode_request(_foreign_conversation("gemini-3-pro-preview", Reasoning(effort="high")))
    for content in body["contents"]:
        types.Content.model_validate(content)
    types.Content.model_validate(body["systemInstruction"])
    for tool in body["tools"]:
        types.Tool.model_validate(tool)
    types.ToolConfig.model_validate(body["toolConfig"])
    config = types.GenerationConfig.model_validate(body["generationConfig"])
    assert config.thinking_config.thinking_level == types.ThinkingLevel.HIGH
    assert config.max_output_tokens == 1000


@pytest.mark.parametrize(
    ("reasoning", "thinking"),
    [
        (Reasoning(effort="medium"), {"thinkingBudget": 8192, "includeThoughts": True}),
        (Reasoning(budget=2000), {"thinkingBudget": 2000, "includeThoughts": True}),
        (Reasoning(effort="none"), {"thinkingBudget": 0}),
        (Reasoning(effort="auto"), {"thinkingBudget": -1, "includeThoughts": True}),
        (None, None),
    ],
)
def test_encode_thinking_budget_for_gemini_2_5(reasoning, thinking):
    body = gemini.encode_request(
        Request(model="gemini-2.5-flash", messages=[Message("user", [Text("hi")])], reasoning=reasoning)
    )
    assert body.get("generationConfig", {}).get("thinkingConfig") == thinking
    # Gemini 2.5 does not validate signatures: foreign calls get no placeholder.
    body = gemini.encode_request(
        Request(
            model="gemini-2.5-pro", messages=[Message("assistant", [ToolCall("c", "f")])], reasoning=reasoning
        )
    )
    assert body["contents"][0]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]


@pytest.mark.parametrize(
    ("reasoning", "thinking"),
    [
        (Reasoning(effort="xhigh"), {"thinkingLevel": "HIGH", "includeThoughts": True}),
        (Reasoning(budget=600), {"thinkingLevel": "LOW", "includeThoughts": True}),
        (Reasoning(effort="none"), {"thinkingLevel": "MINIMAL"}),
        (Reasoning(budget=-1), {"includeThoughts": True}),
    ],
)
def test_encode_thinking_level_for_gemini_3(reasoning, thinking):
    body = gemini.encode_request(Request(model="models/gemini-3-flash", reasoning=reasoning))
    assert body["generationConfig"]["thinkingConfig"] == thinking


def test_encode_request_keeps_gemini_signatures():
    request = Request(
        model="gemini-3-pro-preview",
        messages=[
            Message("user", [Text("go")]),
            Message(
                "assistant",
                [
                    Thinking("plan", signature=SIG_B, origin="gemini"),
                    Thinking("", signature=SIG_A, origin="gemini"),
                    Text("Calling."),
                    ToolCall("call_f_0", "f", {"x": 1}, signature=SIG_A, origin="gemini"),
                    ToolCall("call_f_1", "f", {"x": 2}, origin="gemini"),
                    Thinking("", signature=SIG_B, origin="gemini"),
                ],
            ),
        ],
    )
    assert gemini.encode_request(request)["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "plan", "thought": True, "thoughtSignature": SIG_B},
            {"text": "Calling.", "thoughtSignature": SIG_A},
            {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": SIG_A},
            {"functionCall": {"name": "f", "args": {"x": 2}}},
            {"text": "", "thoughtSignature": SIG_B},
        ],
    }


def test_encode_request_drops_empty_contents_and_merges_roles():
    request = Request(
        model="gemini-2.5-pro",
        messages=[
            Message("user", [Text("a")]),
            Message("assistant", [Text(""), Thinking("foreign", origin="openai-chat")]),
            Message("user", [Text("b")]),
            Message("assistant", [Text("c")]),
        ],
    )
    assert gemini.encode_request(request)["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}]},
    ]


def test_encode_request_result_name_falls_back_to_the_result():
    request = Request(
        model="gemini-2.5-pro",
        messages=[Message("user", [ToolResult("x1", [], name="lookup"), ToolResult("x2", [])])],
    )
    assert gemini.encode_request(request)["contents"][0]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"result": ""}}},
        {"functionResponse": {"name": "x2", "response": {"result": ""}}},
    ]


def test_encode_request_refuses_several_candidates():
    with pytest.raises(ValueError, match="n=2"):
        gemini.encode_request(Request(model="gemini-2.5-pro", n=2))


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="any"), {"mode": "ANY"}),
        (ToolChoice(mode="none"), {"mode": "NONE"}),
        (ToolChoice(mode="tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_encode_tool_choice(choice, config):
    body = gemini.encode_request(
        Request(
            model="gemini-2.5-pro",
            tools=[Tool("f", "", {"type": "object", "properties": {"a": {"type": "string"}}})],
            tool_choice=choice,
        )
    )
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_encode_response_format_json_object():
    body = gemini.encode_request(
        Request(model="gemini-2.5-pro", response_format=ResponseFormat(type="json_object"))
    )
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


# -- schema cleaning -----------------------------------------------------------------------


def test_clean_schema():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Args",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "pattern": "^https://"},
            "when": {"type": "string", "format": "date-time"},
            "point": {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]},
            "mode": {"const": "fast"},
            "level": {"type": "integer", "enum": [1, 2, 3], "exclusiveMinimum": 0},
            "flag": {"enum": [True, False]},
            "either": {"type": ["string", "number"], "description": "text or number"},
            "tree": {"$ref": "#/$defs/Node", "description": "a tree"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
            "pairs": {"type": "array", "items": [{"type": "string"}, {"type": "number"}]},
            "loose": {"type": "array"},
            "anything": {},
            "meta": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.1, "default": 0.5},
            "shape": {
                "oneOf": [{"type": "string"}, {"type": "object", "properties": {"w": {"type": "number"}}}]
            },
            "both": {
                "allOf": [
                    {"$ref": "#/definitions/Named"},
                    {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
                ]
            },
        },
        "required": ["url", "missing"],
        "$defs": {
            "Point": {
                "type": "object",
                "properties": {"x": {"type": "number", "format": "double"}},
                "required": ["x"],
            },
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            },
        },
        "definitions": {
            "Named": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        },
    }
    cleaned = gemini.clean_schema(schema)
    assert cleaned == {
        "type": "object",
        "properties": {
            "url": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "point": {
                "type": "object",
                "properties": {"x": {"type": "number", "format": "double"}},
                "required": ["x"],
                "nullable": True,
            },
            "mode": {"type": "string", "enum": ["fast"]},
            "level": {"type": "string", "enum": ["1", "2", "3"]},
            "flag": {"type": "string", "enum": ["true", "false"]},
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "text or number"},
            "tree": {
                "type": "object",
                "description": "a tree",
                "properties": {
                    "value": {"type": "string"},
                    "children": {"type": "array", "items": {"type": "object"}},
                },
            },
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "pairs": {"type": "array", "items": {"type": "string"}},
            "loose": {"type": "array", "items": {"type": "string"}},
            "anything": {"type": "string"},
            "meta": {"type": "object"},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "shape": {
                "anyOf": [{"type": "string"}, {"type": "object", "properties": {"w": {"type": "number"}}}]
            },
            "both": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
            },
        },
        "required": ["url"],
    }
    types.Schema.model_validate(cleaned)


_REJECTED = {
    "$schema",
    "$ref",
    "$defs",
    "definitions",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "const",
    "default",
    "examples",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "title",
    "oneOf",
    "allOf",
    "uniqueItems",
    "multipleOf",
}

json_schemas = st.recursive(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["string", "integer", "number", "boolean", ["string", "null"], ["integer", "string"]]
            )
        },
        optional={
            "description": st.text(max_size=5),
            "default": st.integers(),
            "const": st.integers(),
            "format": st.sampled_from(["uri", "date-time", "email", "int64"]),
            "exclusiveMinimum": st.integers(),
            "enum": st.lists(
                st.one_of(st.integers(), st.text(max_size=3), st.none()), min_size=1, max_size=3
            ),
        },
    ),
    lambda children: st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(min_size=1, max_size=4), children, max_size=3),
            },
            optional={
                "required": st.lists(st.text(min_size=1, max_size=4), max_size=2),
                "additionalProperties": st.booleans(),
                "title": st.text(max_size=3),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("array"), "items": children}, optional={"uniqueItems": st.booleans()}
        ),
        st.fixed_dictionaries(
            {"anyOf": st.lists(st.one_of(children, st.just({"type": "null"})), min_size=1, max_size=3)}
        ),
        st.fixed_dictionaries({"oneOf": st.lists(children, min_size=1, max_size=3)}),
    ),
    max_leaves=8,
)


def _walk(node):
    yield node
    for sub in (node.get("properties") or {}).values():
        yield from _walk(sub)
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"])
    for sub in node.get("anyOf") or ():
        yield from _walk(sub)


@given(json_schemas)
def test_cleaned_schemas_only_hold_what_gemini_accepts(schema):
    cleaned = gemini.clean_schema(schema)
    types.Schema.model_validate(cleaned)
    for node in _walk(cleaned):
        assert not _REJECTED & node.keys()
        assert "type" in node or "anyOf" in node
        assert not isinstance(node.get("type"), list)
        if "enum" in node:
            assert node["type"] == "string" and all(isinstance(v, str) for v in node["enum"])
        if "required" in node:
            assert set(node["required"]) <= set(node["properties"])
        if node.get("type") == "array":
            assert "items" in node


# -- responses -----------------------------------------------------------------------------

DOCUMENTED_RESPONSE = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "The user wants the weather in two cities.", "thought": True},
                    {"text": "I'll check both.", "thoughtSignature": SIG_B},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SIG_A,
                    },
                    {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 120,
        "candidatesTokenCount": 30,
        "thoughtsTokenCount": 50,
        "totalTokenCount": 200,
        "cachedContentTokenCount": 100,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
    },
    "modelVersion": "gemini-2.5-pro",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}


def test_decode_documented_response():
    response = gemini.decode_response(DOCUMENTED_RESPONSE)
    tag = gemini._response_tag("mAitaLmkHPPlz7IPvtfUqQ4")
    assert response == Response(
        id="mAitaLmkHPPlz7IPvtfUqQ4",
        model="gemini-2.5-pro",
        parts=[
            Thinking("The user wants the weather in two cities.", signature=SIG_B, origin="gemini"),
            Text("I'll check both."),
            ToolCall(f"call_{tag}_0", "get_weather", {"city": "Paris"}, signature=SIG_A, origin="gemini"),
            ToolCall(f"call_{tag}_1", "get_weather", {"city": "London"}, origin="gemini"),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=120, output_tokens=80, cached_tokens=100, reasoning_tokens=50),
    )


def test_response_call_ids_differ_between_responses():
    first = gemini.decode_response({**DOCUMENTED_RESPONSE, "responseId": "one"})
    second = gemini.decode_response({**DOCUMENTED_RESPONSE, "responseId": "two"})
    assert first.parts[2].id != second.parts[2].id
    assert (
        first.parts[2].id == gemini.decode_response({**DOCUMENTED_RESPONSE, "responseId": "one"}).parts[2].id
    )


def test_decode_code_assist_response():
    wrapped = {
        "response": {k: v for k, v in DOCUMENTED_RESPONSE.items() if k != "responseId"},
        "traceId": "trace-9",
    }
    response = gemini.decode_response(wrapped)
    assert response.id == "trace-9"
    assert response.model == "gemini-2.5-pro"
    assert response.stop_reason is StopReason.TOOL_USE
    # A Code Assist body without `response` is an empty answer, not an error.
    assert gemini.decode_response({"traceId": "t"}).parts == []


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("STOP", StopReason.END),
        ("MAX_TOKENS", StopReason.MAX_TOKENS),
        ("SAFETY", StopReason.REFUSAL),
        ("RECITATION", StopReason.REFUSAL),
        ("BLOCKLIST", StopReason.REFUSAL),
        ("PROHIBITED_CONTENT", StopReason.REFUSAL),
        ("SPII", StopReason.REFUSAL),
        ("IMAGE_SAFETY", StopReason.REFUSAL),
        ("MALFORMED_FUNCTION_CALL", StopReason.ERROR),
        ("OTHER", StopReason.ERROR),
        ("MISSING_THOUGHT_SIGNATURE", StopReason.ERROR),
    ],
)
def test_decode_finish_reasons(finish, stop):
    obj = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": finish}]}
    assert gemini.decode_response(obj).stop_reason is stop


def test_decode_blocked_prompt():
    obj = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    response = gemini.decode_response(obj)
    assert response.parts == []
    assert response.stop_reason is StopReason.REFUSAL
    assert response.usage == Usage(input_tokens=9)


def test_encode_response():
    response = Response(
        id="resp_1",
        model="claude-sonnet-4-5",
        parts=[
            Thinking("Two cities.", signature="EqQBCkgIAR", origin="anthropic"),
            Thinking("", signature="ZXJh", origin="anthropic", redacted=True),
            Text("Checking."),
            ToolCall("toolu_01", "get_weather", {"city": "Paris"}),
            ToolCall("call_x_0", "get_weather", {"city": "Rome"}, signature=SIG_A, origin="gemini"),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(
            input_tokens=120, output_tokens=80, cached_tokens=100, cache_write_tokens=5, reasoning_tokens=50
        ),
    )
    body = gemini.encode_response(response)
    assert body == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Two cities.", "thought": True},
                        {"text": "Checking."},
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Paris"},
                                "id": "toolu_01",
                            }
                        },
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Rome"},
                                "id": "call_x_0",
                            },
                            "thoughtSignature": SIG_A,
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 120,
            "candidatesTokenCount": 30,
            "totalTokenCount": 200,
            "thoughtsTokenCount": 50,
            "cachedContentTokenCount": 100,
        },
        "modelVersion": "claude-sonnet-4-5",
        "responseId": "resp_1",
    }
    parsed = types.GenerateContentResponse.model_validate_json(json.dumps(body))
    assert parsed.text == "Checking."
    assert [c.args for c in parsed.function_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert parsed.usage_metadata.thoughts_token_count == 50


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        (StopReason.END, "STOP"),
        (StopReason.STOP_SEQUENCE, "STOP"),
        (StopReason.MAX_TOKENS, "MAX_TOKENS"),
        (StopReason.REFUSAL, "SAFETY"),
        (StopReason.ERROR, "OTHER"),
    ],
)
def test_encode_finish_reasons(stop, finish):
    body = gemini.encode_response(Response(id="r", model="m", stop_reason=stop))
    assert body["candidates"][0]["finishReason"] == finish
    assert "content" not in body["candidates"][0]


@pytest.mark.parametrize(
    ("parsed", "message"),
    [
        (
            {
                "error": {
                    "code": 429,
                    "message": "Resource has been exhausted",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
            "Resource has been exhausted",
        ),
        ([{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}], "bad"),
        ({"error": {"code": 503, "status": "UNAVAILABLE"}}, "UNAVAILABLE"),
        ({"candidates": []}, None),
        ("nope", None),
    ],
)
def test_error_message(parsed, message):
    assert gemini.error_message(parsed) == message


# -- stream decoding -----------------------------------------------------------------------


def _sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\r\n\r\n" for c in chunks)


def _chunk(parts, *, finish=None, usage=None, rid="resp-A"):
    candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk = {"candidates": [candidate], "modelVersion": "gemini-2.5-pro"}
    if rid:
        chunk["responseId"] = rid
    if usage:
        chunk["usageMetadata"] = usage
    return chunk


# Shaped like a recorded `streamGenerateContent?alt=sse` with includeThoughts: thoughts first,
# a signature on an empty part, answer text in pieces, a call, then a last empty-text chunk with
# finishReason STOP and the final usage.
RECORDED_STREAM = _sse(
    _chunk(
        [{"text": "**Planning** the answer", "thought": True}],
        usage={"promptTokenCount": 12, "totalTokenCount": 12},
    ),
    _chunk([{"text": " in French.", "thought": True}]),
    _chunk([{"text": "", "thoughtSignature": SIG_B}]),
    _chunk([{"text": "Voilà, c'est "}, {"text": "déjà prêt 🙂"}]),
    _chunk([{"functionCall": {"name": "save", "args": {"note": "é🙂"}}, "thoughtSignature": SIG_A}]),
    _chunk(
        [{"text": ""}],
        finish="STOP",
        usage={
            "promptTokenCount": 12,
            "candidatesTokenCount": 9,
            "thoughtsTokenCount": 20,
            "totalTokenCount": 41,
            "cachedContentTokenCount": 4,
        },
    ),
)


def _expected_recorded_events():
    call_id = f"call_{gemini._response_tag('resp-A')}_0"
    return [
        Start(id="resp-A", model="gemini-2.5-pro", usage=Usage(input_tokens=12)),
        BlockStart(0, "thinking"),
        Delta(0, text="**Planning** the answer"),
        Delta(0, text=" in French."),
        Delta(0, signature=SIG_B),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, text="Voilà, c'est "),
        Delta(1, text="déjà prêt 🙂"),
        BlockStop(1),
        BlockStart(2, "tool_call", id=call_id, name="save"),
        Delta(2, arguments='{"note":"é🙂"}', signature=SIG_A),
        BlockStop(2),
        Finish(
            StopReason.TOOL_USE,
            usage=Usage(input_tokens=12, output_tokens=29, cached_tokens=4, reasoning_tokens=20),
        ),
    ]


def _decode_all(data: bytes, splits=()) -> list:
    decoder = gemini.stream_decoder()
    events = []
    start = 0
    for cut in sorted(splits):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    events += decoder.close()
    return events


def test_decode_recorded_stream():
    assert _decode_all(RECORDED_STREAM) == _expected_recorded_events()


def test_decode_stream_at_every_split_point():
    expected = _expected_recorded_events()
    # Every single cut, including inside "é" and "🙂" and inside `data:` and `\r\n`.
    for cut in range(1, len(RECORDED_STREAM)):
        assert _decode_all(RECORDED_STREAM, [cut]) == expected, cut


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=1, max_value=len(RECORDED_STREAM) - 1), max_size=25, unique=True))
def test_decode_stream_at_random_split_points(cuts):
    assert _decode_all(RECORDED_STREAM, cuts) == _expected_recorded_events()


def test_decode_stream_byte_by_byte():
    decoder = gemini.stream_decoder()
    events = []
    for i in range(len(RECORDED_STREAM)):
        events += decoder.feed(RECORDED_STREAM[i : i + 1])
    assert events + decoder.close() == _expected_recorded_events()


def test_decode_code_assist_stream_tolerates_noise():
    chunks = [
        {"response": _chunk([{"text": "Hi"}], rid=None), "traceId": "trace-1"},
        {
            "response": _chunk(
                [{"text": " there"}],
                finish="STOP",
                usage={"promptTokenCount": 3, "candidatesTokenCount": 2},
                rid=None,
            ),
            "traceId": "trace-1",
        },
    ]
    data = (
        b": keep-alive\r\n\r\n"
        + _sse(chunks[0])
        + b"event: ping\r\ndata: {}\r\n\r\n"
        + _sse(chunks[1])
        + b"data: [DONE]\r\n\r\n"
    )
    assert _decode_all(data) == [
        Start(id="trace-1", model="gemini-2.5-pro"),
        BlockStart(0, "text"),
        Delta(0, text="Hi"),
        Delta(0, text=" there"),
        BlockStop(0),
        Finish(StopReason.END, usage=Usage(input_tokens=3, output_tokens=2)),
    ]


def test_decode_stream_signature_on_answer_text():
    # Gemini 3 without thought text: the signature rides on the answer's last chunk.
    data = _sse(
        _chunk([{"text": "Hello"}]),
        _chunk([{"text": " world", "thoughtSignature": SIG_A}], finish="STOP"),
    )
    assert _decode_all(data)[1:] == [
        BlockStart(0, "text"),
        Delta(0, text="Hello"),
        BlockStop(0),
        BlockStart(1, "thinking"),
        Delta(1, signature=SIG_A),
        BlockStop(1),
        BlockStart(2, "text"),
        Delta(2, text=" world"),
        BlockStop(2),
        Finish(StopReason.END),
    ]


def test_decode_stream_ended_early():
    data = _sse(_chunk([{"text": "Hel"}]))
    assert _decode_all(data)[1:] == [
        BlockStart(0, "text"),
        Delta(0, text="Hel"),
        BlockStop(0),
        StreamError("upstream stream ended early", 502),
    ]


def test_decode_stream_error_frame():
    data = _sse(
        _chunk([{"text": "Hel"}]),
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
        _chunk([{"text": "ignored"}], finish="STOP"),
    )
    assert _decode_all(data)[1:] == [
        BlockStart(0, "text"),
        Delta(0, text="Hel"),
        BlockStop(0),
        StreamError("The model is overloaded.", status=503),
    ]


def test_decode_stream_blocked_prompt():
    data = _sse(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7},
            "responseId": "r",
        }
    )
    assert _decode_all(data) == [
        Start(id="r", model="", usage=Usage(input_tokens=7)),
        Finish(StopReason.REFUSAL, usage=Usage(input_tokens=7)),
    ]


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("MAX_TOKENS", StopReason.MAX_TOKENS), ("SAFETY", StopReason.REFUSAL), ("OTHER", StopReason.ERROR)],
)
def test_decode_stream_finish_reasons(finish, stop):
    data = _sse(_chunk([{"text": "x"}], finish=finish))
    assert _decode_all(data)[-1] == Finish(stop)


# -- stream encoding -----------------------------------------------------------------------


def _events_for(response: Response) -> list:
    events: list = [Start(id=response.id, model=response.model)]
    for index, part in enumerate(response.parts):
        if isinstance(part, Text):
            events += [
                BlockStart(index, "text"),
                *[Delta(index, text=part.text[i : i + 3]) for i in range(0, len(part.text), 3)],
                BlockStop(index),
            ]
        elif isinstance(part, Thinking):
            events += [BlockStart(index, "thinking")]
            if part.text:
                events.append(Delta(index, text=part.text))
            if part.signature:
                events.append(Delta(index, signature=part.signature))
            events.append(BlockStop(index))
        else:
            raw = json.dumps(part.arguments, ensure_ascii=False)
            events += [BlockStart(index, "tool_call", id=part.id, name=part.name)]
            events += [Delta(index, arguments=raw[i : i + 4]) for i in range(0, len(raw), 4)]
            if part.signature:
                events.append(Delta(index, signature=part.signature))
            events.append(BlockStop(index))
    events.append(Finish(response.stop_reason, usage=response.usage))
    return events


STREAMED = Response(
    id="msg_01",
    model="claude-sonnet-4-5",
    parts=[
        Thinking("Let me think about é", signature=SIG_B, origin="gemini"),
        Text("Bonjour, ça va? 🙂 "),
        Text("Je vérifie."),
        ToolCall("toolu_01", "lookup", {"q": "café", "n": [1, 2]}, signature=SIG_A, origin="gemini"),
        ToolCall("toolu_02", "lookup", {}),
    ],
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=50, output_tokens=30, cached_tokens=10, reasoning_tokens=12),
)


def _encode_stream(events, sse=True, model="gemini-2.5-pro") -> tuple[list[bytes], bytes]:
    encoder = gemini.stream_encoder(Request(model=model), sse)
    pieces = [encoder.encode(e) for e in events]
    pieces.append(encoder.close())
    return pieces, b"".join(pieces)


def _sdk_stream(body: bytes) -> list[types.GenerateContentResponse]:
    """Run the google-genai SDK's own streaming client over `body`."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("alt") == "sse"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(httpx_client=httpx.Client(transport=httpx.MockTransport(handler))),
    )
    return list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"))


def test_encode_stream_through_the_sdk():
    pieces, body = _encode_stream(_events_for(STREAMED))
    # Text goes out as it arrives: one frame per text delta.
    assert pieces[2] == (
        b'data: {"candidates":[{"content":{"role":"model","parts":'
        b'[{"text":"Let me think about \xc3\xa9","thought":true}]},"index":0}],'
        b'"modelVersion":"claude-sonnet-4-5","responseId":"msg_01"}\r\n\r\n'
    )
    chunks = _sdk_stream(body)
    texts = "".join(c.text or "" for c in chunks)
    assert texts == "Bonjour, ça va? 🙂 Je vérifie."
    thoughts = [p for c in chunks for p in c.candidates[0].content.parts if p.thought]
    assert [p.text for p in thoughts] == ["Let me think about é"]
    signatures = [
        p.thought_signature for c in chunks for p in c.candidates[0].content.parts if p.thought_signature
    ]
    assert signatures == [base64.b64decode(SIG_B), base64.b64decode(SIG_A)]
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.id, fc.name, fc.args) for fc in calls] == [
        ("toolu_01", "lookup", {"q": "café", "n": [1, 2]}),
        ("toolu_02", "lookup", {}),
    ]
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count == 50
    assert last.usage_metadata.candidates_token_count == 18
    assert last.usage_metadata.thoughts_token_count == 12
    assert last.usage_metadata.cached_content_token_count == 10
    assert last.usage_metadata.total_token_count == 80
    assert all(c.response_id == "msg_01" and c.model_version == "claude-sonnet-4-5" for c in chunks)


def test_encode_stream_json_array():
    pieces, body = _encode_stream(_events_for(STREAMED), sse=False)
    assert pieces[0] == b"" and pieces[2].startswith(b"[{") and pieces[-1] == b""
    assert body.endswith(b"]")
    chunks = json.loads(body)
    parsed = [types.GenerateContentResponse.model_validate(c) for c in chunks]
    assert "".join(p.text or "" for p in parsed) == "Bonjour, ça va? 🙂 Je vérifie."
    # Each piece extends a valid array prefix: "[" first, then ",\r\n" + chunk.
    assert all(p.startswith(b",\r\n{") for p in pieces[3:-2] if p)


def test_encode_stream_cut_off_without_finish_ends_with_an_error():
    encoder = gemini.stream_encoder(Request(model="m"), False)
    assert json.loads(encoder.close()) == [
        {"error": {"code": 502, "message": "upstream stream ended early", "status": "UNAVAILABLE"}}
    ]
    assert encoder.close() == b""
    encoder = gemini.stream_encoder(Request(model="m"), True)
    encoder.encode(Start(id="r", model="m"))
    assert json.loads(encoder.close()[6:])["error"]["code"] == 502


def test_encode_stream_error_reaches_the_sdk_as_an_api_error():
    events = [
        Start(id="r", model="m"),
        BlockStart(0, "text"),
        Delta(0, text="Hi"),
        StreamError("overloaded", status=503),
    ]
    pieces, body = _encode_stream(events)
    assert pieces[-2].startswith(b"data: {") and pieces[-2].endswith(b"}\r\n\r\n")
    assert json.loads(pieces[-2][6:]) == {
        "error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}
    }
    with pytest.raises(genai_errors.APIError) as raised:
        _sdk_stream(body)
    assert raised.value.code == 503

    pieces, body = _encode_stream(events, sse=False)
    assert json.loads(body)[-1] == {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    assert pieces[-1] == b""


def test_encode_stream_terminal_exactly_once():
    encoder = gemini.stream_encoder(Request(model="m"), True)
    encoder.encode(Start(id="r", model="m"))
    assert encoder.encode(Finish(StopReason.END)).count(b"finishReason") == 1
    assert encoder.encode(Finish(StopReason.END)) == b""
    assert encoder.encode(StreamError("late")) == b""
    assert encoder.close() == b""


def test_encode_stream_bad_arguments_stay_an_object():
    events = [
        Start(id="r", model="m"),
        BlockStart(0, "tool_call", id="c1", name="f"),
        Delta(0, arguments='{"a": '),
        BlockStop(0),
        Finish(StopReason.TOOL_USE),
    ]
    _, body = _encode_stream(events)
    calls = [fc for c in _sdk_stream(body) for fc in (c.function_calls or [])]
    assert calls[0].args == {"_raw": '{"a": '}


# -- round trips ---------------------------------------------------------------------------

signatures = st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())
names = st.sampled_from(["lookup", "get_weather", "save.note", "a-b"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
texts = st.text(min_size=1, max_size=20)
parts = st.lists(
    st.one_of(
        texts.map(Text),
        st.builds(lambda t, s: Thinking(t, signature=s, origin="gemini"), texts, signatures | st.none()),
        st.builds(
            lambda n, a, s: ToolCall("", n, a, signature=s, origin="gemini"),
            names,
            st.dictionaries(st.text(max_size=5), json_values, max_size=3),
            signatures | st.none(),
        ),
    ),
    max_size=6,
)


def _normalise(items) -> list:
    """Adjacent text (or thinking without a signature in between) is one block in Gemini."""
    out: list = []
    for part in items:
        previous = out[-1] if out else None
        if isinstance(part, Text) and isinstance(previous, Text):
            out[-1] = Text(previous.text + part.text)
        elif isinstance(part, Thinking) and isinstance(previous, Thinking) and previous.signature is None:
            out[-1] = Thinking(previous.text + part.text, signature=part.signature, origin="gemini")
        else:
            out.append(part)
    return out


def _with_ids(items, tag: str) -> list:
    n = 0
    out = []
    for part in items:
        if isinstance(part, ToolCall):
            part = ToolCall(f"call_{tag}_{n}", part.name, part.arguments, part.signature, part.origin)
            n += 1
        out.append(part)
    return out


usages = st.builds(
    lambda i, o, c, r: Usage(input_tokens=i + c, output_tokens=o + r, cached_tokens=c, reasoning_tokens=r),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 100),
    st.integers(0, 100),
)


@given(parts, usages)
def test_response_round_trip(items, usage):
    called = any(isinstance(p, ToolCall) for p in items)
    stop = StopReason.TOOL_USE if called else StopReason.END
    response = Response(
        id="rid",
        model="gemini-2.5-pro",
        parts=_with_ids(items, gemini._response_tag("rid")),
        stop_reason=stop,
        usage=usage,
    )
    back = gemini.decode_response(gemini.encode_response(response))
    assert _normalise(back.parts) == _normalise(response.parts)
    assert (back.stop_reason, back.usage, back.id, back.model) == (stop, usage, "rid", "gemini-2.5-pro")


def _assemble(events) -> Response:
    """Canonical stream events back into a Response."""
    start = events[0]
    assert isinstance(start, Start)
    finish = events[-1]
    assert isinstance(finish, Finish)
    blocks: dict[int, list] = {}
    order: list[int] = []
    open_block = None
    for event in events[1:-1]:
        if isinstance(event, BlockStart):
            assert open_block is None, "blocks must not interleave"
            open_block = event.index
            blocks[event.index] = [event, "", "", None]
            order.append(event.index)
        elif isinstance(event, Delta):
            assert event.index == open_block
            block = blocks[event.index]
            block[1] += event.text
            block[2] += event.arguments
            block[3] = event.signature or block[3]
        else:
            assert isinstance(event, BlockStop) and event.index == open_block
            open_block = None
    assert open_block is None
    out: list = []
    for index in order:
        head, text, arguments, signature = blocks[index]
        if head.kind == "text":
            out.append(Text(text))
        elif head.kind == "thinking":
            out.append(Thinking(text, signature=signature, origin="gemini"))
        else:
            out.append(
                ToolCall(head.id, head.name, json.loads(arguments), signature=signature, origin="gemini")
            )
    return Response(
        id=start.id, model=start.model, parts=out, stop_reason=finish.stop_reason, usage=finish.usage
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(parts, usages, st.booleans(), st.randoms(use_true_random=False))
def test_stream_round_trip(items, usage, sse, rnd):
    called = any(isinstance(p, ToolCall) for p in items)
    stop = StopReason.TOOL_USE if called else StopReason.END
    response = Response(
        id="rid", model="gemini-2.5-pro", parts=_with_ids(items, "x"), stop_reason=stop, usage=usage
    )
    _, body = _encode_stream(_events_for(response), sse=sse)
    if sse:
        cuts = sorted(rnd.sample(range(1, len(body)), min(5, len(body) - 1)))
        events = _decode_all(body, cuts)
    else:
        # A Gemini array stream carries the same chunks; re-frame them as SSE to decode.
        events = _decode_all(_sse(*json.loads(body)))
    back = _assemble(events)
    # Ids given by the encoder come back as they are.
    assert _normalise(back.parts) == _normalise(_with_ids(items, "x"))
    assert (back.stop_reason, back.usage) == (stop, usage)


def test_request_round_trip_of_documented_request():
    # decode -> encode keeps what Gemini needs (ids are dropped on the way out on purpose).
    body = gemini.encode_request(gemini.decode_request({**DOCUMENTED_REQUEST, "model": "gemini-2.5-pro"}))
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Reading the postcard", "thought": True, "thoughtSignature": SIG_B},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG_A},
            {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
        ],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": '{"temp_c":18}'}}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "weather service timed out"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
    ]
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 4096, "includeThoughts": True}
    assert body["toolConfig"] == DOCUMENTED_REQUEST["toolConfig"]


messages = st.lists(
    st.one_of(
        st.builds(lambda p: Message("user", p), st.lists(texts.map(Text), min_size=1, max_size=2)),
        st.builds(lambda p: Message("assistant", p), parts.filter(bool)),
    ),
    max_size=5,
)


@given(
    messages,
    st.sampled_from(["gemini-2.5-pro", "gemini-3-pro-preview"]),
    st.sampled_from([None, "minimal", "low", "high"]),
)
def test_request_encoding_is_stable_through_decoding(msgs, model, effort):
    # Answer every call so the conversation is valid, then: encode, decode, encode again.
    conversation = []
    for message in msgs:
        conversation.append(message)
        calls = [p for p in message.parts if isinstance(p, ToolCall)]
        if calls:
            conversation.append(Message("user", [ToolResult(c.id, [Text("ok")], name=c.name) for c in calls]))
    request = Request(
        model=model,
        messages=conversation,
        reasoning=Reasoning(effort=effort) if effort else None,
        system=[Text("sys")],
    )
    first = gemini.encode_request(request)
    decoded = gemini.decode_request(first)
    decoded.model = model
    assert gemini.encode_request(decoded) == first
    for content in first["contents"]:
        types.Content.model_validate(content)
        assert content["parts"]
    roles = [c["role"] for c in first["contents"]]
    assert all(a != b for a, b in itertools.pairwise(roles))


def test_random_split_points_on_a_long_stream():
    rng = random.Random(7)
    body = _encode_stream(_events_for(STREAMED))[1]
    expected = _decode_all(body)
    for _ in range(300):
        cuts = rng.sample(range(1, len(body)), rng.randint(1, 40))
        assert _decode_all(body, cuts) == expected
