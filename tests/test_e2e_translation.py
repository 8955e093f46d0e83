"""Any client format reaches any provider, through a real mitmdump, with the official SDKs."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

CLAUDE = "sk-ant-translation-test-0001"
GEMINI = "AIza-translation-test-0001"
CODEX = "sk-translation-test-codex-0001"
COMPAT = "sk-translation-test-compat-0001"
SHARED = "claude-shared-model"  # offered by the Claude key and (by alias) the Gemini key


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(
        {
            "claude-api-key": [{"api-key": CLAUDE}],
            "gemini-api-key": [
                {
                    "api-key": GEMINI,
                    "models": [
                        {"name": "gemini-2.5-flash"},
                        {"name": "gemini-2.5-pro", "alias": SHARED},
                    ],
                }
            ],
            "codex-api-key": [{"api-key": CODEX}],
            "openai-compatibility": [
                {
                    "name": "compat",
                    "base-url": fake.base_url + "/v1",
                    "api-key-entries": [{"api-key": COMPAT}],
                    "models": [{"name": "compat-model"}],
                }
            ],
            "upstream-overrides": vendor_overrides(fake),
            "routing": {"strategy": "fill-first"},
            "image-fetch": {"allowed-hosts": ["127.0.0.1"]},  # the image_server fixture
        }
    )


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


@pytest.fixture
def oai(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0)


@pytest.fixture
def claude(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)


@pytest.fixture
def gemini(proxy) -> genai.Client:
    return genai.Client(
        api_key="unused",
        http_options=genai_types.HttpOptions(
            base_url=proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )


def test_openai_chat_client_served_by_a_claude_key(oai, fake):
    result = oai.chat.completions.create(
        model="claude-test-1",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=50,
    )
    assert result.choices[0].message.content == fake.text
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.completion_tokens > 0
    (seen,) = fake.requests
    assert (seen.vendor, seen.path, seen.api_key) == ("anthropic", "/v1/messages", CLAUDE)
    assert seen.headers["anthropic-version"]
    body = seen.json()
    assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] or body[
        "messages"
    ] == [{"role": "user", "content": "hi"}]


def test_openai_chat_stream_from_a_claude_key(oai, fake):
    stream = oai.chat.completions.create(
        model="claude-test-1", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake.expected_stream_text()
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_anthropic_client_served_by_a_gemini_key(claude, fake):
    message = claude.messages.create(
        model="gemini-2.5-flash", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == fake.text
    assert message.stop_reason == "end_turn"
    (seen,) = fake.requests
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.api_key == GEMINI
    assert seen.json()["contents"][0]["parts"][0]["text"] == "hi"


def test_anthropic_stream_from_a_gemini_key(claude, fake):
    with claude.messages.stream(
        model="gemini-2.5-flash", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == fake.expected_stream_text()
    assert final.stop_reason == "end_turn"
    assert fake.requests[0].path.endswith(":streamGenerateContent")
    assert fake.requests[0].query.get("alt") == "sse"


def test_gemini_client_served_by_a_codex_key(gemini, fake):
    result = gemini.models.generate_content(model="gpt-5", contents="hi")
    assert result.text == fake.text
    (seen,) = fake.requests
    assert (seen.vendor, seen.api_key) == ("openai-responses", CODEX)


def test_gemini_stream_from_a_codex_key(gemini, fake):
    chunks = list(gemini.models.generate_content_stream(model="gpt-5", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == fake.expected_stream_text()


def test_responses_client_served_by_an_openai_compatible_service(oai, fake):
    result = oai.responses.create(model="compat-model", input="hi")
    assert result.output_text == fake.text
    assert fake.requests[0].vendor == "openai-chat"


def test_responses_stream_from_a_claude_key(oai, fake):
    events = list(oai.responses.create(model="claude-test-1", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == fake.expected_stream_text()


def test_count_tokens_across_formats(claude, fake):
    counted = claude.messages.count_tokens(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hello"}]
    )
    (seen,) = fake.requests
    assert seen.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert counted.input_tokens == max(1, len(seen.body) // 4)
    estimated = claude.messages.count_tokens(
        model="compat-model", messages=[{"role": "user", "content": "hello"}]
    )
    assert estimated.input_tokens > 0
    assert len(fake.requests) == 1  # estimated locally: chat services cannot count


def test_reasoning_suffix_becomes_thinking_config(gemini, fake):
    gemini.models.generate_content(model="gemini-2.5-flash(high)", contents="hi")
    (seen,) = fake.requests
    assert seen.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert seen.json()["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 24576


def test_upstream_error_reaches_the_client_in_its_own_shape(oai, fake):
    fake.fail(CLAUDE, 400, body=b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}')
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model="claude-test-1", messages=[{"role": "user", "content": "hi"}])
    assert "prompt is too long" in raised.value.message


def test_failover_to_another_provider_translates_afresh(oai, fake):
    """The Gemini key (first in config order) is rate limited; the Claude key serving the
    same model answers, and the request is translated for Anthropic this time."""
    fake.fail(GEMINI, 429, headers={"Retry-After": "30"}, times=1)
    result = oai.chat.completions.create(model=SHARED, messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == fake.text
    assert [r.vendor for r in fake.requests] == ["gemini", "anthropic"]
    assert fake.requests[0].path == "/v1beta/models/gemini-2.5-pro:generateContent"
    assert fake.requests[1].json()["model"] == SHARED


def test_n_greater_than_one_is_refused(oai, fake):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="claude-test-1", messages=[{"role": "user", "content": "hi"}], n=2)
    assert fake.requests == []


@pytest.fixture(scope="module")
def image_server():
    """A plain HTTP server with one PNG, as an image host would be."""
    import base64
    import http.server
    import threading

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/cat.png"):
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            else:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", png
    server.shutdown()


def test_image_urls_are_fetched_for_gemini(oai, fake, image_server):
    """Gemini cannot fetch an arbitrary URL: the proxy fetches the image and sends it inline."""
    import base64

    base, png = image_server
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"{base}/cat.png?sig=secret-token"}},
    ]
    oai.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    parts = fake.requests[0].json()["contents"][0]["parts"]
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    assert inline == [{"mimeType": "image/png", "data": base64.b64encode(png).decode()}]


def test_an_image_that_cannot_be_fetched_is_a_clear_400(oai, fake, image_server):
    base, _ = image_server
    content = [{"type": "image_url", "image_url": {"url": f"{base}/missing.png?sig=secret-token"}}]
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    assert "could not be fetched (HTTP 404)" in raised.value.message
    assert "secret-token" not in raised.value.message
    assert fake.requests == []


# -- fidelity: what the vendors' own accumulators make of translated answers -------------------------

import json  # noqa: E402

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
CUT = '{"city": "Par'  # what arrived of a call before the token limit
PATCH = '*** Begin Patch\n*** Add File: hello.txt\n+héllo 🙂\n*** End Patch\n'
CHAT_PATCH_TOOL = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'}},
    },
}


def _chat_chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "compat-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


CHAT_USAGE = {"prompt_tokens": 3000, "completion_tokens": 9, "total_tokens": 3009, "prompt_tokens_details": {"cached_tokens": 2048}}
CHAT_CUT_CALL_EVENTS = [
    _chat_chunk({"role": "assistant", "content": "Let me look."}),
    _chat_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    _chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": CUT}}]}),
    _chat_chunk({}, "length"),
    _chat_chunk({}, usage=CHAT_USAGE),
]
CHAT_CUT_CALL_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "compat-model",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": CUT}}],
            },
            "finish_reason": "length",
        }
    ],
    "usage": CHAT_USAGE,
}
ANTHROPIC_USAGE = {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 2048, "cache_creation_input_tokens": 100}


def _anthropic_events(blocks: list[tuple[dict, list[dict]]], stop: str, start_block: bool = True) -> list[dict]:
    """An Anthropic Messages stream: each (content_block, deltas) as one block."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1", "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}}
    events = [{"type": "message_start", "message": message}]
    for index, (block, deltas) in enumerate(blocks):
        if start_block:
            events.append({"type": "content_block_start", "index": index, "content_block": block})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": ANTHROPIC_USAGE})
    events.append({"type": "message_stop"})
    return events


def _anthropic_body(content: list[dict], stop: str) -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1", "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": ANTHROPIC_USAGE}


ANTHROPIC_CUT_CALL = [
    ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me look."}]),
    ({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}, [{"type": "input_json_delta", "partial_json": CUT}]),
]


def test_responses_stream_of_a_cut_off_call_ends_incomplete_with_what_arrived(oai, fake):
    fake.script_reply("openai-chat", events=CHAT_CUT_CALL_EVENTS)
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}
    with oai.responses.stream(model="compat-model", input="weather in Paris?", tools=[tool]) as stream:
        events = list(stream)
    # The SDK's accumulator ends an incomplete answer with `response.incomplete`, not a final response.
    done = [e.item for e in events if e.type == "response.output_item.done"]
    (final,) = [e.response for e in events if e.type == "response.incomplete"]
    assert events[-1].type == "response.incomplete"
    assert (final.status, final.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    message, call = final.output
    assert (message.type, message.status, message.content[0].text) == ("message", "completed", "Let me look.")
    assert (call.type, call.name, call.status, call.arguments) == ("function_call", "get_weather", "incomplete", CUT)
    assert [(i.type, i.status) for i in done] == [("message", "completed"), ("function_call", "incomplete")]
    assert done[1].arguments == CUT
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (3000, 2048)


def test_responses_answer_cut_off_in_text_is_an_incomplete_message(oai, fake):
    body = {**CHAT_CUT_CALL_BODY, "choices": [{"index": 0, "message": {"role": "assistant", "content": "This sentence is cut"}, "finish_reason": "length"}]}
    fake.script_reply("openai-chat", body=body)
    result = oai.responses.create(model="compat-model", input="hi")
    assert result.status == "incomplete"
    (message,) = result.output
    assert (message.status, result.output_text) == ("incomplete", "This sentence is cut")
    assert result.usage.input_tokens_details.cached_tokens == 2048


def test_chat_stream_of_a_half_tool_use_from_anthropic_stops_for_length(oai, fake):
    fake.script_reply("anthropic", events=_anthropic_events(ANTHROPIC_CUT_CALL, "max_tokens"))
    # The SDK's accumulator refuses to parse a cut-off answer, and hands over what it has.
    with pytest.raises(openai.LengthFinishReasonError) as raised:
        with oai.chat.completions.stream(
            model="claude-test-1", messages=[{"role": "user", "content": "weather?"}], tools=[CHAT_WEATHER],
            stream_options={"include_usage": True},
        ) as stream:
            stream.get_final_completion()
    final = raised.value.completion
    choice = final.choices[0]
    assert choice.finish_reason == "length"
    (call,) = choice.message.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_weather", CUT)
    # Anthropic's input_tokens leaves the cached prompt out; prompt_tokens counts all of it.
    assert (final.usage.prompt_tokens, final.usage.prompt_tokens_details.cached_tokens) == (2158, 2048)


def test_anthropic_stream_of_a_cut_off_chat_call_stops_at_max_tokens(claude, fake):
    fake.script_reply("openai-chat", events=CHAT_CUT_CALL_EVENTS)
    tool = {"name": "get_weather", "input_schema": WEATHER}
    with claude.messages.stream(
        model="compat-model", max_tokens=9, messages=[{"role": "user", "content": "weather?"}], tools=[tool]
    ) as stream:
        partial = "".join(e.partial_json for e in stream if e.type == "input_json")
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert partial == CUT
    assert final.content[-1].type == "tool_use"
    usage = final.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (3000 - 2048, 2048)


def test_gemini_client_gets_no_half_function_call(gemini, fake):
    content = [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Par"}}]
    fake.script_reply("anthropic", body=_anthropic_body(content, "max_tokens"))
    result = gemini.models.generate_content(model="claude-test-1", contents="weather?")
    candidate = result.candidates[0]
    assert candidate.finish_reason == genai_types.FinishReason.MAX_TOKENS
    assert result.function_calls is None and result.text == "Let me look."
    meta = result.usage_metadata
    assert (meta.prompt_token_count, meta.cached_content_token_count) == (2158, 2048)


# -- prompt caching from OpenAI-format clients to Anthropic ---------------------------------------------


def test_chat_cache_control_reaches_anthropic_at_each_position(oai, fake):
    fake.script_reply("anthropic", body=_anthropic_body([{"type": "text", "text": "ok"}], "end_turn"))
    ephemeral = {"type": "ephemeral"}
    result = oai.chat.completions.create(
        model="claude-test-1",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "You are terse." * 50, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "A long document." * 100, "cache_control": ephemeral},
                {"type": "text", "text": "Question?"},
            ]},
        ],
        tools=[{**CHAT_WEATHER, "cache_control": ephemeral}],
    )
    body = fake.requests[0].json()
    assert body["tools"][0]["cache_control"] == ephemeral
    assert body["system"] == [{"type": "text", "text": "You are terse." * 50, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first, second = body["messages"][0]["content"]
    assert first["cache_control"] == ephemeral and "cache_control" not in second
    usage = result.usage
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (2158, 2048)
    assert usage.total_tokens == 2158 + 9


def test_more_than_four_cache_breakpoints_keep_the_last_four(oai, fake):
    fake.script_reply("anthropic", body=_anthropic_body([{"type": "text", "text": "ok"}], "end_turn"))
    mark = {"type": "ephemeral"}
    turns = []
    for n in range(3):
        turns += [
            {"role": "user", "content": [{"type": "text", "text": f"question {n}", "cache_control": mark}]},
            {"role": "assistant", "content": f"answer {n}"},
        ]
    oai.chat.completions.create(
        model="claude-test-1",
        messages=[{"role": "system", "content": [{"type": "text", "text": "sys", "cache_control": mark}]}, *turns,
                  {"role": "user", "content": "last", "cache_control": mark}],  # LiteLLM's message-level form
        tools=[{**CHAT_WEATHER, "cache_control": mark}],
    )
    body = fake.requests[0].json()
    marked = [("tool", t["name"]) for t in body["tools"] if "cache_control" in t]
    marked += [("system", b["text"]) for b in body["system"] if "cache_control" in b]
    marked += [(m["role"], b.get("text")) for m in body["messages"] for b in m["content"] if "cache_control" in b]
    assert marked == [("user", "question 0"), ("user", "question 1"), ("user", "question 2"), ("user", "last")]


def test_responses_stream_reports_cached_tokens_from_anthropic(oai, fake):
    blocks = [({"type": "text", "text": ""}, [{"type": "text_delta", "text": "ok"}])]
    fake.script_reply("anthropic", events=_anthropic_events(blocks, "end_turn"))
    with oai.responses.stream(
        model="claude-test-1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "doc", "cache_control": {"type": "ephemeral"}}]}],
    ) as stream:
        final = stream.get_final_response()
    assert fake.requests[0].json()["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert final.output_text == "ok"
    usage = final.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.input_tokens_details.cache_write_tokens) == (2158, 2048, 100)


def test_anthropic_client_reads_cached_tokens_of_a_chat_upstream(claude, fake):
    fake.script_reply("openai-chat", body={**CHAT_CUT_CALL_BODY, "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})
    message = claude.messages.create(model="compat-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (3000 - 2048, 2048)


# -- custom (freeform) tools from a chat client -----------------------------------------------------------


def _second_turn(call) -> list[dict]:
    return [
        {"role": "user", "content": "add hello.txt"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Done!"},
    ]


def test_chat_custom_tool_round_trips_through_a_responses_upstream(oai, fake):
    item = {"id": "ctc_1", "type": "custom_tool_call", "status": "completed", "call_id": "call_patch", "name": "apply_patch", "input": PATCH}
    fake.script_reply("openai-responses", body={
        "id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-5", "output": [item],
        "usage": {"input_tokens": 5, "output_tokens": 5, "total_tokens": 10,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    })
    result = oai.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "add hello.txt"}], tools=[CHAT_PATCH_TOOL])
    sent = fake.requests[0].json()
    assert sent["tools"] == [{"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
                              "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'}}]
    (call,) = result.choices[0].message.tool_calls
    assert (call.type, call.id, call.custom.name, call.custom.input) == ("custom", "call_patch", "apply_patch", PATCH)
    assert result.choices[0].finish_reason == "tool_calls"

    oai.chat.completions.create(model="gpt-5", messages=_second_turn(call.model_dump()), tools=[CHAT_PATCH_TOOL])
    items = fake.requests[1].json()["input"]
    assert {"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch", "input": PATCH} in items
    assert {"type": "custom_tool_call_output", "call_id": "call_patch", "output": "Done!"} in items


def test_chat_custom_tool_round_trips_through_an_anthropic_stream(oai, fake):
    arguments = json.dumps({"input": PATCH})
    blocks = [({"type": "tool_use", "id": "toolu_patch", "name": "apply_patch", "input": {}},
               [{"type": "input_json_delta", "partial_json": arguments[:17]}, {"type": "input_json_delta", "partial_json": arguments[17:]}])]
    fake.script_reply("anthropic", events=_anthropic_events(blocks, "tool_use"))
    stream = oai.chat.completions.create(
        model="claude-test-1", messages=[{"role": "user", "content": "add hello.txt"}], tools=[CHAT_PATCH_TOOL], stream=True
    )
    fragments = [c for chunk in stream for choice in chunk.choices for c in choice.delta.tool_calls or ()]
    tool = fake.requests[0].json()["tools"][0]
    assert tool["name"] == "apply_patch" and tool["input_schema"]["properties"]["input"]["type"] == "string"
    assert "lark grammar" in tool["description"]  # the grammar, which Anthropic cannot enforce, is told
    first = fragments[0].model_dump()
    assert (first["type"], first["id"], first["custom"]["name"]) == ("custom", "toolu_patch", "apply_patch")
    assert "".join(f.model_dump()["custom"]["input"] for f in fragments) == PATCH

    call = {"id": "toolu_patch", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}
    fake.script_reply("anthropic", body=_anthropic_body([{"type": "text", "text": "ok"}], "end_turn"))
    oai.chat.completions.create(model="claude-test-1", messages=_second_turn(call), tools=[CHAT_PATCH_TOOL])
    assistant, results = fake.requests[1].json()["messages"][1:]
    assert assistant["content"] == [{"type": "tool_use", "id": "toolu_patch", "name": "apply_patch", "input": {"input": PATCH}}]
    assert results["content"][0]["tool_use_id"] == "toolu_patch"


def test_chat_custom_tool_round_trips_through_gemini(oai, fake):
    fake.script_reply("gemini", body={
        "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "apply_patch", "args": {"input": PATCH}}}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 10},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1",
    })
    result = oai.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "add hello.txt"}], tools=[CHAT_PATCH_TOOL])
    (declaration,) = fake.requests[0].json()["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "apply_patch" and declaration["parameters"]["properties"]["input"]["type"] == "string"
    (call,) = result.choices[0].message.tool_calls
    assert (call.type, call.custom.name, call.custom.input) == ("custom", "apply_patch", PATCH)

    oai.chat.completions.create(model="gemini-2.5-flash", messages=_second_turn(call.model_dump()), tools=[CHAT_PATCH_TOOL])
    contents = fake.requests[1].json()["contents"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "apply_patch", "args": {"input": PATCH}}
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "apply_patch"


# -- upstream streams that leave out optional fields -------------------------------------------------------


def test_responses_stream_without_item_announcements_still_has_its_text(oai, fake):
    response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-5", "output": []}
    fake.script_reply("openai-responses", events=[
        {"type": "response.created", "response": response},
        {"type": "response.output_text.delta", "delta": "Hello, "},  # no item_id, no output_index
        {"type": "response.output_text.delta", "item_id": "msg_x", "output_index": 0, "content_index": 0, "delta": "world"},
        {"type": "response.completed", "response": {**response, "status": "completed", "usage": {
            "input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}},
    ])
    stream = oai.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello, world"


def test_anthropic_deltas_without_a_block_start_still_have_their_text(oai, fake):
    blocks = [({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hello, "}, {"type": "text_delta", "text": "world"}])]
    fake.script_reply("anthropic", events=_anthropic_events(blocks, "end_turn", start_block=False))
    stream = oai.chat.completions.create(model="claude-test-1", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello, world"


def test_codex_style_apply_patch_through_a_claude_key(oai, fake):
    """A Responses client's custom tool (Codex's apply_patch) served by Anthropic: a function of
    one string there, a `custom_tool_call` again in the SDK's accumulated response."""
    arguments = json.dumps({"input": PATCH})
    blocks = [({"type": "tool_use", "id": "toolu_patch", "name": "apply_patch", "input": {}},
               [{"type": "input_json_delta", "partial_json": arguments[:20]}, {"type": "input_json_delta", "partial_json": arguments[20:]}])]
    fake.script_reply("anthropic", events=_anthropic_events(blocks, "tool_use"))
    tool = {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": {"type": "text"}}
    with oai.responses.stream(model="claude-test-1", input="add hello.txt", tools=[tool]) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.custom_tool_call_input.delta")
        final = stream.get_final_response()
    (call,) = final.output
    assert (call.type, call.call_id, call.name, call.input) == ("custom_tool_call", "toolu_patch", "apply_patch", PATCH)
    assert deltas == PATCH
    assert fake.requests[0].json()["tools"][0]["input_schema"]["required"] == ["input"]
