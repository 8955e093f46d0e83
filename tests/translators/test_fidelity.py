"""Golden tests of the translation-fidelity fixes, from the vendors' documented wire shapes
(field names as the openai / anthropic SDK types spell them): cut-off answers, custom (freeform)
tools, prompt caching, Code Assist response ids, lenient upstream streams."""

from __future__ import annotations

import json

import pytest

from translators import anthropic, code_assist, custom_tools, gemini, openai_chat, openai_responses
from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Finish,
    Image,
    Message,
    Request,
    Response,
    Start,
    StopReason,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)
from translators.jsonutil import partial_object
from translators.sse import sse_bytes
from translators.translate import accumulate

PATCH = "*** Begin Patch\n*** Add File: a.txt\n+\"quoted\" \\ é 🙂\n*** End Patch"


def _decode(decoder, data: bytes) -> list:
    return decoder.feed(data) + decoder.close()


def _sse(events: list[dict], named: bool = True) -> bytes:
    return b"".join(sse_bytes(e, e["type"] if named else None) for e in events)


# -- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("", {}),
        ('{"city": "Paris"}', {"city": "Paris"}),
        ('{"city": "Pa', {"city": "Pa"}),
        ('{"a": 1, "b": tr', {"a": 1}),
        ('{"a": {"b": [1, 2', {"a": {"b": [1, 2]}}),
        ('{"ci', {}),
        ('{"a": "x\\', {"a": "x"}),
        ("[1, 2]", {}),
    ],
)
def test_partial_object_reads_what_a_cut_object_says(raw, expected):
    assert partial_object(raw) == expected


def test_input_reader_unwraps_the_string_as_it_arrives():
    encoded = json.dumps({"input": PATCH})
    for size in (1, 2, 3, 7, len(encoded)):
        reader = custom_tools.InputReader()
        pieces = [reader.feed(encoded[i : i + size]) for i in range(0, len(encoded), size)]
        assert "".join(pieces) + reader.finish() == PATCH
        if size < len(encoded):
            assert sum(1 for p in pieces if p) > 1  # streamed, not held to the end


def test_input_reader_of_other_shapes_and_cut_input():
    reader = custom_tools.InputReader()
    assert reader.feed('{"other": 1, "input": "x"}') == "" and reader.finish() == "x"
    assert custom_tools.input_of({"_raw": '{"input": "*** Begin Pa'}) == "*** Begin Pa"
    assert custom_tools.input_of({"_raw": ""}) == ""
    assert custom_tools.input_of({"input": PATCH}) == PATCH


# -- 1. cut-off answers ---------------------------------------------------------------------------


def _cut_response(arguments: dict) -> Response:
    return Response(
        id="resp_1",
        model="m",
        parts=[Text("Let me look."), ToolCall("call_1", "get_weather", arguments)],
        stop_reason=StopReason.MAX_TOKENS,
    )


def test_responses_whole_answer_marks_the_cut_call_incomplete_with_what_arrived():
    body = openai_responses.encode_response(_cut_response({"_raw": '{"city": "Par'}))
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    message, call = body["output"]
    assert message["status"] == "completed"
    assert (call["type"], call["status"], call["arguments"]) == ("function_call", "incomplete", '{"city": "Par')
    nothing = openai_responses.encode_response(_cut_response({"_raw": ""}))
    assert nothing["output"][1]["arguments"] == ""  # not an invented "{}"
    # ... and the decoder reads it back as cut.
    assert openai_responses.decode_response(nothing).parts[1].arguments == {"_raw": ""}


def test_responses_stream_holds_an_items_end_until_it_knows_it_was_cut():
    encoder = openai_responses.StreamEncoder(Request(model="m"))
    events = [
        Start("r1", "m"),
        BlockStart(0, "tool_call", id="call_1", name="get_weather"),
        BlockStop(0),
    ]
    data = b"".join(encoder.encode(e) for e in events)
    assert b"output_item.done" not in data  # not yet: finished or cut off?
    data += encoder.encode(Finish(StopReason.MAX_TOKENS, Usage(input_tokens=5)))
    frames = [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: ")]
    (done,) = [f for f in frames if f["type"] == "response.output_item.done"]
    assert (done["item"]["status"], done["item"]["arguments"]) == ("incomplete", "")
    assert not [f for f in frames if f["type"] == "response.function_call_arguments.delta"]
    assert frames[-1]["type"] == "response.incomplete"
    assert frames[-1]["response"]["output"] == [done["item"]]


def test_chat_whole_answer_cut_by_length_keeps_the_arguments_that_arrived():
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}],
                },
                "finish_reason": "length",
            }
        ],
    }
    response = openai_chat.decode_response(body)
    assert response.stop_reason is StopReason.MAX_TOKENS
    assert response.parts[0].arguments == {"_raw": ""}
    assert openai_chat.encode_response(response)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == ""


def test_anthropic_whole_answer_has_the_cut_input_as_far_as_it_reads():
    body = anthropic.encode_response(_cut_response({"_raw": '{"city": "Par'}))
    assert body["stop_reason"] == "max_tokens"
    assert body["content"][-1] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Par"}}
    # An Anthropic answer cut before any input: no arguments, rather than an empty object.
    decoded = anthropic.decode_response(body | {"content": [{**body["content"][-1], "input": {}}]})
    assert decoded.parts[-1].arguments == {"_raw": ""}


def test_gemini_never_sends_a_cut_function_call():
    body = gemini.encode_response(_cut_response({"_raw": '{"city": "Par'}))
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Let me look."}]
    # A finished call, though, goes out as soon as the next event says it was not cut.
    encoder = gemini.GeminiStreamEncoder(Request(model="m"))
    out = b"".join(
        encoder.encode(e)
        for e in [Start("r", "m"), BlockStart(0, "tool_call", id="c", name="f"), Delta(0, arguments="{}"), BlockStop(0)]
    )
    assert b"functionCall" not in out
    assert b"functionCall" in encoder.encode(BlockStart(1, "text"))


def test_accumulate_keeps_a_cut_calls_arguments_exactly():
    events = [
        Start("r", "m"),
        BlockStart(0, "tool_call", id="c", name="f"),
        BlockStop(0),
        Finish(StopReason.MAX_TOKENS),
    ]
    assert accumulate(events).parts[0].arguments == {"_raw": ""}
    finished = [*events[:-1], Finish(StopReason.TOOL_USE)]
    assert accumulate(finished).parts[0].arguments == {}


# -- 2. Code Assist answers: traceId is the responseId ----------------------------------------------------


def test_code_assist_answers_take_their_trace_id_as_response_id():
    wrapped = {"response": {"candidates": [], "responseId": "inner"}, "traceId": "trace-1"}
    assert json.loads(code_assist.unwrap_body(json.dumps(wrapped).encode()))["responseId"] == "trace-1"
    unwrapper = code_assist.Unwrapper(sse=True)
    out = b"".join(unwrapper(b"data: " + json.dumps(wrapped).encode() + b"\r\n\r\n") + unwrapper(b""))
    assert json.loads(out[len(b"data: ") :])["responseId"] == "trace-1"
    assert gemini.decode_response(wrapped).id == "trace-1"
    plain = {"candidates": [], "responseId": "own"}
    assert json.loads(code_assist.unwrap_body(json.dumps(plain).encode())) == plain


# -- 3. prompt caching ---------------------------------------------------------------------------------


def test_chat_cache_control_positions_decode_and_reach_anthropic():
    body = {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "developer", "content": "dev", "cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}, "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": {"type": "ephemeral"}}
        ],
    }
    request = openai_chat.decode_request(body)
    assert request.system == [Text("sys", {"type": "ephemeral", "ttl": "1h"}), Text("dev", {"type": "ephemeral"})]
    assert request.tools[0].cache_control == {"type": "ephemeral"}
    sent = anthropic.encode_request(request)
    # Five marks: the last four are kept (the tool's, first in prefix order, goes).
    assert "cache_control" not in sent["tools"][0]
    assert [b.get("cache_control") for b in sent["system"]] == [{"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"}]
    assert [b.get("cache_control") for b in sent["messages"][0]["content"]] == [{"type": "ephemeral"}] * 2


def test_tool_message_cache_control_marks_its_result():
    request = openai_chat.decode_request(
        {
            "model": "m",
            "messages": [
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "big output", "cache_control": {"type": "ephemeral"}},
            ],
        }
    )
    (result,) = request.messages[1].parts
    assert isinstance(result, ToolResult) and result.cache_control == {"type": "ephemeral"}
    block = anthropic.encode_request(request)["messages"][1]["content"][0]
    assert block["type"] == "tool_result" and block["cache_control"] == {"type": "ephemeral"}


def test_responses_input_and_tool_cache_control_decode():
    request = openai_responses.decode_request(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "rules", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [{"type": "input_text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {}, "cache_control": {"type": "ephemeral"}}],
        }
    )
    assert request.system == [Text("rules", {"type": "ephemeral"})]
    assert request.messages == [Message("user", [Text("doc", {"type": "ephemeral", "ttl": "5m"})])]
    assert request.tools[0].cache_control == {"type": "ephemeral"}
    assert openai_chat.decode_request(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "other"}}]}]}
    ).messages[0].parts == [Text("x")]  # not Anthropic's kind of mark: nothing to carry


def test_cached_usage_in_each_format():
    usage = Usage(input_tokens=3000, output_tokens=10, cached_tokens=2048, cache_write_tokens=100)
    assert anthropic.encode_usage(usage)["input_tokens"] == 3000 - 2048 - 100
    assert anthropic.decode_usage(anthropic.encode_usage(usage)) == usage
    chat = openai_chat.encode_response(Response("c", "m", usage=usage))["usage"]
    assert (chat["prompt_tokens"], chat["prompt_tokens_details"]["cached_tokens"], chat["total_tokens"]) == (3000, 2048, 3010)
    responses = openai_responses.encode_response(Response("r", "m", usage=usage))["usage"]
    assert responses["input_tokens_details"] == {"cached_tokens": 2048, "cache_write_tokens": 100}
    meta = gemini.encode_response(Response("g", "m", usage=usage))["usageMetadata"]
    assert (meta["promptTokenCount"], meta["cachedContentTokenCount"]) == (3000, 2048)


# -- 4. custom (freeform) tools --------------------------------------------------------------------------

CHAT_CUSTOM_TOOL = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files.",
        "format": {"type": "grammar", "grammar": {"definition": "start: /.+/", "syntax": "lark"}},
    },
}


def test_chat_custom_tool_request_round_trip_and_to_responses():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "patch it"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Done"},
        ],
        "tools": [CHAT_CUSTOM_TOOL],
        "tool_choice": {"type": "custom", "custom": {"name": "apply_patch"}},
    }
    request = openai_chat.decode_request(body)
    assert request.tools == [
        Tool(
            "apply_patch",
            "Edit files.",
            custom_tools.PARAMETERS,
            custom=True,
            format={"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
        )
    ]
    assert request.messages[1].parts == [ToolCall("call_1", "apply_patch", {"input": PATCH}, custom=True)]
    again = openai_chat.encode_request(request)
    assert again["tools"] == [CHAT_CUSTOM_TOOL]
    assert again["tool_choice"] == {"type": "custom", "custom": {"name": "apply_patch"}}
    assert again["messages"][1]["tool_calls"] == body["messages"][1]["tool_calls"]
    responses = openai_responses.encode_request(request)
    assert responses["tools"] == [
        {"type": "custom", "name": "apply_patch", "description": "Edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    ]
    assert responses["tool_choice"] == {"type": "custom", "name": "apply_patch"}
    assert responses["input"][1:] == [
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done"},
    ]
    # Anthropic and Gemini: a function of one string, its grammar told in the description.
    (tool,) = anthropic.encode_request(request)["tools"]
    assert tool["input_schema"] == custom_tools.PARAMETERS
    assert tool["description"].startswith("Edit files.") and "start: /.+/" in tool["description"]
    (declaration,) = gemini.encode_request(request)["tools"][0]["functionDeclarations"]
    assert declaration["parameters"]["required"] == ["input"] and "lark" in declaration["description"]


def test_responses_custom_tool_call_stream_decodes_as_one_string_function():
    """The event sequence api.openai.com streams for a custom tool call."""
    item = {"id": "ctc_1", "type": "custom_tool_call", "status": "in_progress", "call_id": "call_1", "input": "", "name": "shell"}
    response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-5", "output": []}
    data = _sse(
        [
            {"type": "response.created", "response": response},
            {"type": "response.output_item.added", "item": item, "output_index": 0},
            {"type": "response.custom_tool_call_input.delta", "delta": "echo \"", "item_id": "ctc_1", "output_index": 0},
            {"type": "response.custom_tool_call_input.delta", "delta": "hi\"", "item_id": "ctc_1", "output_index": 0},
            {"type": "response.custom_tool_call_input.done", "input": 'echo "hi"', "item_id": "ctc_1", "output_index": 0},
            {"type": "response.output_item.done", "item": {**item, "status": "completed", "input": 'echo "hi"'}, "output_index": 0},
            {"type": "response.completed", "response": {**response, "status": "completed"}},
        ]
    )
    events = _decode(openai_responses.stream_decoder(), data)
    assert events[1] == BlockStart(0, "tool_call", id="call_1", name="shell")
    result = accumulate(events)
    assert result.parts == [ToolCall("call_1", "shell", {"input": 'echo "hi"'})]
    assert result.stop_reason is StopReason.TOOL_USE
    whole = openai_responses.decode_response({**response, "status": "completed", "output": [{**item, "input": "ls"}]})
    assert whole.parts == [ToolCall("call_1", "shell", {"input": "ls"}, custom=True)]


def test_chat_custom_tool_call_stream_decodes():
    """Chat streams a custom call as `{"type": "custom", "custom": {"name", "input"}}` fragments."""

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    data = (
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "apply_patch", "input": ""}}]})
        + chunk({"tool_calls": [{"index": 0, "custom": {"input": PATCH[:10]}}]})
        + chunk({"tool_calls": [{"index": 0, "custom": {"input": PATCH[10:]}}]})
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    result = accumulate(_decode(openai_chat.ChatStreamDecoder(), data))
    assert result.parts == [ToolCall("call_1", "apply_patch", {"input": PATCH})]
    # Cut by the limit, the input is what arrived.
    cut = data.replace(b'"tool_calls"}', b'"length"}')
    assert custom_tools.input_of(accumulate(_decode(openai_chat.ChatStreamDecoder(), cut)).parts[0].arguments) == PATCH


# -- 5. lenient upstream streams --------------------------------------------------------------------------


def test_responses_text_and_reasoning_deltas_without_their_items_are_kept():
    response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "m"}
    data = _sse(
        [
            {"type": "response.created", "response": response},
            {"type": "response.reasoning_summary_text.delta", "delta": "hmm", "summary_index": 0},
            {"type": "response.output_text.delta", "delta": "Hello, "},
            {"type": "response.output_text.delta", "item_id": "msg_9", "delta": "world"},
            {"type": "response.output_text.delta", "output_index": 3, "content_index": 0, "delta": "!"},
            {"type": "response.completed", "response": {**response, "status": "completed"}},
        ],
        named=False,
    )
    result = accumulate(_decode(openai_responses.stream_decoder(), data))
    assert [(type(p).__name__, getattr(p, "text", None)) for p in result.parts] == [
        ("Thinking", "hmm"), ("Text", "Hello, world"), ("Text", "!")  # "!" names another item
    ]


def test_responses_stream_with_only_a_completed_event_is_its_output():
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "all at once"}]}]
    data = _sse([{"type": "response.completed", "response": {"id": "r", "status": "completed", "output": output}}])
    result = accumulate(_decode(openai_responses.stream_decoder(), data))
    assert result.parts == [Text("all at once")] and result.stop_reason is StopReason.END


def test_anthropic_deltas_without_block_start_or_index_are_kept():
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}
    data = _sse(
        [
            {"type": "message_start", "message": message},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " there"}},
            {"type": "content_block_stop"},
            {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'}},
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
            {"type": "message_stop"},
        ]
    )
    result = accumulate(_decode(anthropic.stream_decoder(), data))
    assert [(type(p).__name__, getattr(p, "text", None)) for p in result.parts[:2]] == [("Thinking", "hmm"), ("Text", "Hi there")]
    assert result.parts[2].arguments == {"a": 1}


def test_chat_tool_call_fragments_without_index_are_kept():
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"delta": delta, "finish_reason": finish}]}  # no choice index either
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    data = (
        chunk({"tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":'}}]})
        + chunk({"tool_calls": [{"function": {"arguments": " 1}"}}]})
        + chunk({"tool_calls": [{"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]})
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    result = accumulate(_decode(openai_chat.ChatStreamDecoder(), data))
    assert [(p.id, p.name, p.arguments) for p in result.parts] == [("call_a", "f", {"x": 1}), ("call_b", "g", {})]


def test_gemini_content_without_role_keeps_the_models_calls():
    request = gemini.decode_request(
        {
            "contents": [
                {"parts": [{"text": "weather?"}]},
                {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                {"parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
            ]
        }
    )
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert request.messages[1].parts[0].arguments == {"city": "Paris"}


def test_gemini_stream_parts_without_role_are_text():
    chunk = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}
    result = accumulate(_decode(gemini.stream_decoder(), b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"))
    assert result.parts == [Text("Hi")]


def test_image_cache_control_reaches_anthropic():
    request = Request(model="m", messages=[Message("user", [Image("image/png", data="AAAA", cache_control={"type": "ephemeral"})])])
    (block,) = anthropic.encode_request(request)["messages"][0]["content"]
    assert block["type"] == "image" and block["cache_control"] == {"type": "ephemeral"}
