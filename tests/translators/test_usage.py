"""translators/usage.py: an answer's usage, found by its key, in whole bodies and in streams split
anywhere, with the codecs' own meaning of each count."""

from __future__ import annotations

import json

import pytest

from translators.canonical import Usage
from translators.formats import Format
from translators.usage import UsageScan, usage_from_body


def sse(event: str | None, payload: dict) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()


CHAT_STREAM = b"".join(
    [
        sse(None, {"choices": [{"delta": {"content": "Hel"}}], "usage": None}),
        sse(None, {"choices": [{"delta": {"content": 'lo "usage": {"prompt_tokens": 999}'}}], "usage": None}),
        sse(None, {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": None}),
        sse(None, {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7,
                                            "prompt_tokens_details": {"cached_tokens": 4},
                                            "completion_tokens_details": {"reasoning_tokens": 3}}}),
        b"data: [DONE]\n\n",
    ]
)
ANTHROPIC_STREAM = b"".join(
    [
        sse("message_start", {"type": "message_start", "message": {"id": "m", "content": [], "usage": {
            "input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 1}}}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "input_json_delta", "partial_json": '{"usage": {"a": 1}}'}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 42}}),
        sse("message_stop", {"type": "message_stop"}),
    ]
)
RESPONSES_STREAM = b"".join(
    [
        sse("response.created", {"type": "response.created", "response": {
            "id": "r", "tools": [{"type": "function", "name": "f", "parameters": {
                "type": "object", "properties": {"usage": {"type": "string"}}}}], "usage": None}}),
        sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
        sse("response.completed", {"type": "response.completed", "response": {
            "id": "r", "output": [], "usage": {"input_tokens": 30, "output_tokens": 8,
                                              "input_tokens_details": {"cached_tokens": 10},
                                              "output_tokens_details": {"reasoning_tokens": 2}}}}),
    ]
)
GEMINI_STREAM = b"".join(
    [
        b"data: " + json.dumps({"candidates": [{"content": {"parts": [{"functionCall": {
            "name": "f", "args": {"usageMetadata": {"promptTokenCount": 999}}}}]}}],
            "usageMetadata": {"promptTokenCount": 9}}).encode() + b"\r\n\r\n",
        b"data: " + json.dumps({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
                                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4,
                                                  "thoughtsTokenCount": 6, "cachedContentTokenCount": 2}}).encode()
        + b"\r\n\r\n",
    ]
)

EXPECTED = {
    Format.OPENAI_CHAT: (CHAT_STREAM, Usage(12, 7, 4, 0, 3)),
    # Canonical input counts the whole prompt, cached parts included; the start's input stays.
    Format.ANTHROPIC: (ANTHROPIC_STREAM, Usage(125, 42, 100, 5, 0)),
    Format.OPENAI_RESPONSES: (RESPONSES_STREAM, Usage(30, 8, 10, 0, 2)),
    # Gemini's output counts its thoughts.
    Format.GEMINI: (GEMINI_STREAM, Usage(9, 10, 2, 0, 6)),
}


@pytest.mark.parametrize("fmt", list(EXPECTED), ids=lambda f: f.value)
@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_a_stream_split_anywhere(fmt, size):
    stream, expected = EXPECTED[fmt]
    scan = UsageScan(fmt)
    for i in range(0, len(stream), size):
        scan(stream[i : i + size])
    assert scan.usage() == expected


def test_a_code_assist_stream_is_gemini_inside_an_envelope():
    stream = b"data: " + json.dumps({"response": {"candidates": [], "usageMetadata": {
        "promptTokenCount": 3, "candidatesTokenCount": 2}}, "traceId": "t"}).encode() + b"\n\n"
    scan = UsageScan(Format.GEMINI)
    scan(stream)
    assert scan.usage() == Usage(3, 2)


def test_no_usage_is_none():
    scan = UsageScan(Format.OPENAI_CHAT)
    scan(sse(None, {"choices": [{"delta": {"content": "x"}}], "usage": None}))
    assert scan.usage() is None
    assert UsageScan(Format.ANTHROPIC).usage() is None


@pytest.mark.parametrize(
    "fmt, body, expected",
    [
        (Format.OPENAI_CHAT, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}, Usage(5, 6)),
        (Format.ANTHROPIC, {"content": [{"type": "tool_use", "input": {"usage": {"input_tokens": 1}}}],
                            "usage": {"input_tokens": 7, "output_tokens": 2}}, Usage(7, 2)),
        (Format.OPENAI_RESPONSES, {"output": [], "usage": {"input_tokens": 3, "output_tokens": 4}}, Usage(3, 4)),
        (Format.GEMINI, {"candidates": [], "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 1}},
         Usage(8, 1)),
        (Format.OPENAI_CHAT, {"choices": [], "usage": None}, None),
        (Format.OPENAI_CHAT, {"choices": []}, None),
    ],
)
def test_whole_bodies(fmt, body, expected):
    assert usage_from_body(fmt, json.dumps(body).encode()) == expected


def test_a_codex_stream_read_whole():
    assert usage_from_body(Format.OPENAI_RESPONSES, RESPONSES_STREAM) == Usage(30, 8, 10, 0, 2)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "12", "completion_tokens": -3},
        {"prompt_tokens": 1e300, "completion_tokens": True},
        {"prompt_tokens": 10**30, "completion_tokens": 2.5},
        {"prompt_tokens_details": 5, "completion_tokens": 1},
        {"prompt_tokens_details": {"cached_tokens": [1]}},
    ],
)
def test_hostile_counts_never_raise_and_never_pass_as_counts(usage):
    body = json.dumps({"usage": usage}).encode()
    found = usage_from_body(Format.OPENAI_CHAT, body)
    if found is not None:
        for value in (found.input_tokens, found.output_tokens, found.cached_tokens, found.reasoning_tokens):
            assert type(value) is int and 0 <= value <= 10**12


@pytest.mark.parametrize("body", [b'{"usage": {"prompt_tokens": 3', b'{"usage": ', b'{"usage" : [1]}', b"\xff\xfe usage"])
def test_cut_or_broken_bodies_are_none(body):
    assert usage_from_body(Format.OPENAI_CHAT, body) is None
