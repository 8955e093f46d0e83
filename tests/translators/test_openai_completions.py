"""translators/openai_completions.py: the legacy Completions API, a client-only format."""

from __future__ import annotations

import json
import random
import time

import openai
import openai._streaming
import pytest
from openai.types import Completion

from auth.credential import Credential
from routing import legs
from routing.endpoints import Endpoint, Kind, match
from routing.router import PROVIDER_FORMATS, Route
from routing.upstream import ClientRequest
from tests.translators.test_cross_format import SCENARIOS, upstream_stream
from translators import translate
from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Message,
    Request,
    Response,
    Start,
    StopReason,
    StreamError,
    Text,
    Thinking,
    ToolCall,
    Usage,
)
from translators.codec import codec
from translators.errors import error_body
from translators.formats import CLIENT_ONLY, Format
from translators.openai_completions import (
    CODEC,
    CompletionsStreamEncoder,
    decode_request,
    encode_response,
)
from translators.translate import (
    StreamTranslator,
    TranslationError,
    accumulate,
    translate_response,
)

COMPLETIONS = Format.OPENAI_COMPLETIONS
UPSTREAMS = [f for f in Format if f not in CLIENT_ONLY]

# The SDK's HTTP library: httpx up to openai 2, httpx2 from openai 3.
_sdk_httpx = getattr(openai._streaming, "httpx2", None) or openai._streaming.httpx


def sdk_chunks(body: bytes) -> list[Completion]:
    """What `client.completions.create(stream=True)` yields for a stream body (raises on an error frame)."""
    response = _sdk_httpx.Response(
        200,
        content=body,
        headers={"content-type": "text/event-stream"},
        request=_sdk_httpx.Request("POST", "https://api.openai.com/v1/completions"),
    )
    return list(openai.Stream(cast_to=Completion, response=response, client=openai.OpenAI(api_key="sk-test")))


def encode_stream(events: list[Event], request: Request | None = None) -> bytes:
    encoder = CompletionsStreamEncoder(request or Request(model="m", stream=True, stream_usage=True), True)
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_750_000_000.0)


# -- format registry -----------------------------------------------------------------------------


def test_format_and_codec_are_registered():
    assert COMPLETIONS.value == "openai-completions"
    assert COMPLETIONS.title == "OpenAI Completions (legacy)"
    assert COMPLETIONS in CLIENT_ONLY
    assert codec(COMPLETIONS) is CODEC and CODEC.format is COMPLETIONS


def test_the_upstream_side_does_not_exist():
    with pytest.raises(NotImplementedError, match="client-only"):
        CODEC.encode_request(Request(model="m"))
    with pytest.raises(NotImplementedError, match="client-only"):
        CODEC.decode_response({})
    with pytest.raises(NotImplementedError, match="client-only"):
        CODEC.stream_decoder()


def test_no_provider_speaks_a_client_only_format():
    assert not CLIENT_ONLY & set(PROVIDER_FORMATS.values())


# -- requests ------------------------------------------------------------------------------------


def test_golden_request_decode():
    body = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
        "suffix": "and that was it",
        "max_tokens": 7,
        "temperature": 0.2,
        "top_p": 0.9,
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n", "END"],
        "echo": False,
        "logprobs": 3,
        "best_of": 1,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "seed": 7,
        "user": "user-1234",
    }
    assert decode_request(body) == Request(
        model="gpt-3.5-turbo-instruct",
        messages=[Message("user", [Text("Say this is a test")])],
        max_tokens=7,
        temperature=0.2,
        top_p=0.9,
        stop=["\n", "END"],
        stream=True,
        stream_usage=True,
    )


def test_minimal_request_gets_the_apis_default_max_tokens():
    assert decode_request({"model": "m", "prompt": "hi"}) == Request(
        model="m", messages=[Message("user", [Text("hi")])], max_tokens=16
    )
    assert decode_request({"model": "m", "prompt": "hi", "max_tokens": None}).max_tokens == 16
    assert decode_request({"model": "m", "prompt": "hi", "max_tokens": 0}).max_tokens == 0


def test_a_one_element_prompt_list_is_that_prompt():
    assert decode_request({"model": "m", "prompt": ["hi"]}).messages == [Message("user", [Text("hi")])]


def test_a_single_stop_string_and_include_usage_without_stream():
    request = decode_request({"model": "m", "prompt": "x", "stop": "\n\n", "stream_options": {"include_usage": True}})
    assert request.stop == ["\n\n"] and request.stream_usage is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"prompt": ["one", "two"]}, "batch of 2 prompts"),
        ({"prompt": [1, 2, 3]}, "token-id prompts"),
        ({"prompt": [[1, 2], [3]]}, "token-id prompts"),
        ({"prompt": []}, "a list of one string"),
        ({"prompt": None}, "'prompt' is required"),
        ({"prompt": 42}, "a list of one string"),
        ({"prompt": "x", "n": 2}, "n=2"),
        ({"prompt": "x", "echo": True}, "'echo'"),
    ],
)
def test_requests_that_cannot_be_honoured_are_refused(extra, message):
    body = {"model": "m", **extra}
    with pytest.raises(ValueError, match=message):
        decode_request(body)
    # ... and as a TranslationError from the hub, which the dispatcher answers with a 400.
    with pytest.raises(TranslationError, match=message):
        translate.decode_request(COMPLETIONS, body, "claude-x", False)


def test_a_reasoning_suffix_still_applies():
    request = translate.decode_request(COMPLETIONS, {"model": "c(high)", "prompt": "hi"}, "claude-x(high)", True)
    assert request.model == "claude-x" and request.reasoning is not None and request.stream


def test_translated_to_every_upstream():
    body = {"model": "x", "prompt": "Once upon a time", "max_tokens": 20, "stop": "."}
    request = translate.decode_request(COMPLETIONS, body, "x", False)
    anthropic = json.loads(translate.encode_request(Format.ANTHROPIC, request))
    assert anthropic["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Once upon a time"}]}]
    assert anthropic["max_tokens"] == 20 and anthropic["stop_sequences"] == ["."]
    chat = json.loads(translate.encode_request(Format.OPENAI_CHAT, request))
    assert chat["messages"] == [{"role": "user", "content": "Once upon a time"}]
    gemini = json.loads(translate.encode_request(Format.GEMINI, request))
    assert gemini["contents"] == [{"role": "user", "parts": [{"text": "Once upon a time"}]}]
    responses = json.loads(translate.encode_request(Format.OPENAI_RESPONSES, request))
    assert responses["max_output_tokens"] == 20


# -- responses -----------------------------------------------------------------------------------


def test_golden_response_encode():
    response = Response(
        id="msg_01",
        model="claude-sonnet-4-5",
        parts=[Thinking("hmm", signature="sig"), Text("This is "), Text("a test.")],
        stop_reason=StopReason.END,
        usage=Usage(input_tokens=5, output_tokens=7, cached_tokens=2, reasoning_tokens=1),
        created=1_741_570_283,
    )
    body = encode_response(response)
    assert body == {
        "id": "cmpl-msg_01",
        "object": "text_completion",
        "created": 1_741_570_283,
        "model": "claude-sonnet-4-5",
        "choices": [{"text": "This is a test.", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    parsed = Completion.model_validate(body)
    assert parsed.choices[0].text == "This is a test." and parsed.usage.total_tokens == 12


def test_response_ids_keep_an_existing_prefix_and_get_one_when_missing():
    assert encode_response(Response(id="cmpl-abc", model="m"))["id"] == "cmpl-abc"
    generated = encode_response(Response(id="", model="m"))["id"]
    assert generated.startswith("cmpl-") and len(generated) > len("cmpl-")
    assert encode_response(Response(id="x", model="m"))["created"] == 1_750_000_000


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        (StopReason.END, "stop"),
        (StopReason.STOP_SEQUENCE, "stop"),
        (StopReason.MAX_TOKENS, "length"),
        (StopReason.REFUSAL, "content_filter"),
        (StopReason.TOOL_USE, "stop"),
        (StopReason.ERROR, "stop"),
    ],
)
def test_finish_reasons(stop, finish):
    body = encode_response(Response(id="r", model="m", parts=[Text("x")], stop_reason=stop))
    assert Completion.model_validate(body).choices[0].finish_reason == finish


def test_tool_calls_are_dropped():
    response = Response(
        id="r",
        model="m",
        parts=[Text("Let me look."), ToolCall("call_1", "web_search", {"q": "x"})],
        stop_reason=StopReason.TOOL_USE,
    )
    choice = encode_response(response)["choices"][0]
    assert (choice["text"], choice["finish_reason"]) == ("Let me look.", "stop")


def test_whole_response_from_an_anthropic_upstream():
    upstream = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 16},
    }
    body = json.loads(translate_response(Format.ANTHROPIC, COMPLETIONS, json.dumps(upstream).encode()))
    completion = Completion.model_validate(body)
    assert completion.id == "cmpl-msg_01" and completion.object == "text_completion"
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == ("Hello", "length")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 16)


# -- streams -------------------------------------------------------------------------------------


EVENTS = [
    Start(id="msg_01", model="claude-sonnet-4-5", created=1_741_570_283),
    BlockStart(0, "thinking"),
    Delta(0, text="Let me think"),
    Delta(0, signature="sig"),
    BlockStop(0),
    BlockStart(1, "text"),
    Delta(1, text="Hello, "),
    Delta(1, text=""),
    Delta(1, text="wörld 🙂"),
    BlockStop(1),
    BlockStart(2, "tool_call", id="toolu_1", name="web_search"),
    Delta(2, arguments='{"q":"x"}'),
    BlockStop(2),
    Finish(StopReason.TOOL_USE, Usage(input_tokens=10, output_tokens=4)),
]


def test_encoded_stream_exact_bytes_without_usage():
    events = [Start(id="cmpl-1", model="davinci", created=1), BlockStart(0, "text"), Delta(0, text="é"),
              BlockStop(0), Finish(StopReason.MAX_TOKENS, Usage(1, 1))]
    body = encode_stream(events, Request(model="davinci", stream=True))
    head = '{"id":"cmpl-1","object":"text_completion","created":1,"model":"davinci","choices":'
    assert body.decode() == (
        f'data: {head}[{{"text":"é","index":0,"logprobs":null,"finish_reason":null}}]}}\n\n'
        f'data: {head}[{{"text":"","index":0,"logprobs":null,"finish_reason":"length"}}]}}\n\n'
        "data: [DONE]\n\n"
    )


def test_encoded_stream_through_the_sdk():
    body = encode_stream(EVENTS)
    assert body.endswith(b"data: [DONE]\n\n") and body.count(b"[DONE]") == 1
    chunks = sdk_chunks(body)
    assert {(c.id, c.object, c.created, c.model) for c in chunks} == {
        ("cmpl-msg_01", "text_completion", 1_741_570_283, "claude-sonnet-4-5")}
    text_chunks = [c for c in chunks if c.choices]
    # Thinking, signatures, empty deltas and tool calls make no chunk.
    assert [c.choices[0].text for c in text_chunks] == ["Hello, ", "wörld 🙂", ""]
    assert [c.choices[0].finish_reason for c in text_chunks] == [None, None, "stop"]
    assert all(c.choices[0].index == 0 and c.choices[0].logprobs is None for c in text_chunks)
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (10, 4, 14)


def test_no_usage_frame_unless_asked():
    chunks = sdk_chunks(encode_stream(EVENTS, Request(model="m", stream=True)))
    assert all(c.choices for c in chunks)
    assert b'"usage"' not in encode_stream(EVENTS, Request(model="m", stream=True))


def test_usage_defaults_to_zero():
    chunks = sdk_chunks(encode_stream([Start(id="r", model="m", created=1), Finish(StopReason.END)]))
    assert chunks[-1].usage.total_tokens == 0


def test_a_stream_without_start_still_has_an_id():
    body = encode_stream([BlockStart(0, "text"), Delta(0, text="x"), BlockStop(0), Finish(StopReason.END)])
    chunks = sdk_chunks(body)
    assert chunks[0].id.startswith("cmpl-") and len({c.id for c in chunks}) == 1
    assert chunks[0].created == 1_750_000_000


def test_encoded_stream_error_raises_in_the_sdk():
    events = [Start(id="r", model="m", created=1), BlockStart(0, "text"), Delta(0, text="par"),
              StreamError("upstream overloaded", 503)]
    encoder = CompletionsStreamEncoder(Request(model="m"), True)
    body = b"".join(encoder.encode(e) for e in events)
    assert encoder.encode(Finish(StopReason.END)) == b"" and encoder.close() == b""
    assert body.endswith(b"data: [DONE]\n\n")
    error = json.loads(body.split(b"data: ")[2])
    assert error == {"error": {"message": "upstream overloaded", "type": "server_error", "param": None, "code": None}}
    with pytest.raises(openai.APIError, match="upstream overloaded"):
        sdk_chunks(body)


def test_encoder_close_without_terminal_reports_an_error():
    encoder = CompletionsStreamEncoder(Request(model="m"), True)
    assert encoder.encode(Start(id="r", model="m", created=1)) == b""
    tail = encoder.close()
    assert tail.endswith(b"data: [DONE]\n\n") and b'"error"' in tail
    assert encoder.close() == b""


# -- completions as the client of every upstream ------------------------------------------------


def _stream_frames(data: bytes) -> list[dict]:
    """Well-formedness: `data:` frames only, one [DONE], last; every other frame a text_completion."""
    frames = [f for f in data.decode().split("\n\n") if f]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    payloads = [f[len("data: "):] for f in frames]
    assert payloads.count("[DONE]") == 1 and payloads[-1] == "[DONE]"
    parsed = [json.loads(p) for p in payloads[:-1]]
    assert all(p["object"] == "text_completion" for p in parsed)
    assert len({(p["id"], p["created"], p["model"]) for p in parsed}) == 1
    return parsed


def _translate_stream(upstream: Format, data: bytes, cuts: list[int]) -> bytes:
    translator = StreamTranslator(upstream, COMPLETIONS, Request(model="model-x", stream=True, stream_usage=True))
    out, start = [], 0
    for cut in [*cuts, len(data)]:
        out.extend(translator(data[start:cut]))
        start = cut
    out.extend(translator(b""))
    assert all(out), "an empty chunk would end an HTTP/1.1 chunked response"
    return b"".join(out)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda f: f.value)
def test_stream_from_every_upstream_equals_the_non_stream_answer(upstream, scenario):
    events = scenario(upstream)
    data = upstream_stream(upstream, events)
    streamed = _translate_stream(upstream, data, [])
    payloads = _stream_frames(streamed)
    chunks = sdk_chunks(streamed)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert payloads[-1]["choices"] == [] and usage is not None

    whole = codec(upstream).encode_response(accumulate(events, upstream.value))
    translated = Completion.model_validate_json(translate_response(upstream, COMPLETIONS, json.dumps(whole).encode()))
    assert translated.id == chunks[0].id
    assert text == translated.choices[0].text
    assert finishes == [translated.choices[0].finish_reason]
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        translated.usage.prompt_tokens, translated.usage.completion_tokens)
    expected = "".join(e.text for e in events if isinstance(e, Delta) and e.index in {
        b.index for b in events if isinstance(b, BlockStart) and b.kind == "text"})
    assert text == expected


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda f: f.value)
def test_chunk_boundaries_change_nothing(upstream):
    rng = random.Random(f"{upstream.value}->completions")
    for scenario in SCENARIOS:
        data = upstream_stream(upstream, scenario(upstream))
        whole = _translate_stream(upstream, data, [])
        for cut in range(1, len(data)):
            assert _translate_stream(upstream, data, [cut]) == whole, (scenario.__name__, cut)
        for _ in range(10):
            cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, min(40, len(data) - 1))))
            assert _translate_stream(upstream, data, cuts) == whole


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda f: f.value)
def test_upstream_cut_off_mid_stream_ends_in_an_error(upstream):
    data = upstream_stream(upstream, SCENARIOS[0](upstream))
    cut = data.index("wörld".encode()) + 2  # inside the ö
    streamed = _translate_stream(upstream, data[:cut], [])
    assert streamed.endswith(b"data: [DONE]\n\n")
    with pytest.raises(openai.APIError):
        sdk_chunks(streamed)


# -- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/completions", "/completions", "/v1/completions/"])
def test_completions_routes(path):
    assert match("POST", path, {}) == Endpoint(Kind.GENERATE, COMPLETIONS)


def test_errors_are_in_openais_shape():
    assert json.loads(error_body(COMPLETIONS, 400, "bad")) == json.loads(error_body(Format.OPENAI_CHAT, 400, "bad"))


def _client(body: dict, stream: bool = False) -> ClientRequest:
    raw = json.dumps(body).encode()
    return ClientRequest(
        endpoint=Endpoint(Kind.GENERATE, COMPLETIONS),
        model=body["model"],
        stream=stream,
        method="POST",
        path="/v1/completions",
        query=(),
        headers={},
        raw_headers=(),
        body=raw,
        parsed=body,
    )


@pytest.mark.parametrize("provider", sorted(PROVIDER_FORMATS))
def test_a_completions_request_is_always_translated(provider):
    cred = Credential(provider=provider, source=f"{provider}[0]", secret="sk-pool-secret")
    if provider == "openai-compatibility":
        cred = Credential(provider=provider, source="compat[0]", secret="sk-pool-secret",
                          base_url="https://compat.example.com/v1")
    client = _client({"model": "some-model", "prompt": "hi"}, stream=True)
    leg = legs.plan(client, Route(cred, "some-model"), {})
    assert leg.translated and leg.request is not None
    assert leg.upstream is PROVIDER_FORMATS[provider] and leg.client_format is COMPLETIONS
    assert leg.description == f"openai-completions -> {leg.upstream.value}"
    assert leg.body != client.body
    assert legs.stream_content_type(client) == "text/event-stream"
    assert legs.request_headers(leg)["accept-encoding"] == "identity"


def test_whole_upstream_error_is_answered_in_openais_shape():
    cred = Credential(provider="claude", source="claude[0]", secret="sk-pool-secret")
    client = _client({"model": "claude-x", "prompt": "hi"})
    leg = legs.plan(client, Route(cred, "claude-x"), {})
    upstream_error = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}'
    content_type, body = legs.whole_response(leg, client, 400, upstream_error)
    assert content_type == "application/json"
    assert json.loads(body)["error"] == {
        "message": "prompt is too long", "type": "invalid_request_error", "param": None, "code": None}
