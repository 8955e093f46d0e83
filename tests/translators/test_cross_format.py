"""Every upstream format to every client format: stream invariants, stream equals non-stream,
and chunk boundaries that change nothing."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.translators.stream_checks import check_stream
from translators.canonical import (
    BlockStart,
    BlockStop,
    Delta,
    Event,
    Finish,
    Request,
    Response,
    Start,
    StopReason,
    Text,
    Thinking,
    ToolCall,
    Usage,
)
from translators.codec import codec
from translators.formats import CLIENT_ONLY, Format
from translators.translate import StreamTranslator, accumulate, translate_response

# Client-only formats have no upstream side (and no stream decoder): see test_openai_completions.
FORMATS = [f for f in Format if f not in CLIENT_ONLY]
PAIRS = [(up, client) for up in FORMATS for client in FORMATS if up is not client]


def _usage() -> Usage:
    return Usage(input_tokens=120, output_tokens=40, cached_tokens=20, reasoning_tokens=0)


def text_only(origin: Format) -> list[Event]:
    return [
        Start("msg_1", "model-x", created=1_750_000_000),
        BlockStart(0, "text"),
        Delta(0, text="Hello, "),
        Delta(0, text="wörld 🙂 "),
        Delta(0, text="done."),
        BlockStop(0),
        Finish(StopReason.END, _usage()),
    ]


def thinking_then_text(origin: Format) -> list[Event]:
    return [
        Start("msg_2", "model-x", created=1_750_000_000),
        BlockStart(0, "thinking"),
        Delta(0, text="Let me think"),
        Delta(0, text=" about it."),
        Delta(0, signature="sig-" + origin.value),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, text="The answer is 42."),
        BlockStop(1),
        Finish(StopReason.END, Usage(input_tokens=50, output_tokens=30, reasoning_tokens=12)),
    ]


def parallel_tool_calls(origin: Format) -> list[Event]:
    return [
        Start("msg_3", "model-x", created=1_750_000_000),
        BlockStart(0, "text"),
        Delta(0, text="Checking both cities."),
        BlockStop(0),
        BlockStart(1, "tool_call", id="call_paris", name="get_weather"),
        Delta(1, arguments='{"city": '),
        Delta(1, arguments='"Paris"}'),
        BlockStop(1),
        BlockStart(2, "tool_call", id="call_tokyo", name="get_weather"),
        Delta(2, arguments='{"city": "Tōkyō", "units": ["c"]}'),
        BlockStop(2),
        Finish(StopReason.TOOL_USE, _usage()),
    ]


def cut_off_by_max_tokens(origin: Format) -> list[Event]:
    return [
        Start("msg_4", "model-x", created=1_750_000_000),
        BlockStart(0, "text"),
        Delta(0, text="This sentence is cut"),
        BlockStop(0),
        Finish(StopReason.MAX_TOKENS, _usage()),
    ]


SCENARIOS = [text_only, thinking_then_text, parallel_tool_calls, cut_off_by_max_tokens]


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch):
    # Encoders stamp `created` from the clock when the upstream did not say (Anthropic, Gemini).
    monkeypatch.setattr(time, "time", lambda: 1_750_000_000.0)


def _request() -> Request:
    return Request(model="model-x", stream=True, stream_usage=True)


def upstream_stream(upstream: Format, events: list[Event]) -> bytes:
    encoder = codec(upstream).stream_encoder(_request(), True)
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


def translate_stream(upstream: Format, client: Format, data: bytes, cuts: list[int]) -> bytes:
    translator = StreamTranslator(upstream, client, _request())
    out, start = [], 0
    for cut in [*cuts, len(data)]:
        out.extend(translator(data[start:cut]))
        start = cut
    out.extend(translator(b""))
    assert all(out), "an empty chunk would end an HTTP/1.1 chunked response"
    return b"".join(out)


def summary(response: Response) -> list[tuple]:
    """What a user reads off a response; ids and signatures aside."""
    parts: list[tuple] = []
    for part in response.parts:
        if isinstance(part, Text):
            if parts and parts[-1][0] == "text":  # formats differ in how they chunk text parts
                parts[-1] = ("text", parts[-1][1] + part.text)
            elif part.text:
                parts.append(("text", part.text))
        elif isinstance(part, Thinking):
            if part.text:
                parts.append(("thinking", part.text))
        elif isinstance(part, ToolCall):
            parts.append(("tool_call", part.name, json.dumps(part.arguments, sort_keys=True)))
    return [*parts, ("stop", response.stop_reason), ("output_tokens", response.usage.output_tokens)]


def client_side(client: Format, data: bytes) -> Response:
    decoder = codec(client).stream_decoder()
    return accumulate(decoder.feed(data) + decoder.close(), client.value)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_translated_stream_is_well_formed_and_equals_the_non_stream_answer(upstream, client, scenario):
    events = scenario(upstream)
    data = upstream_stream(upstream, events)
    streamed = translate_stream(upstream, client, data, [])
    check_stream(client, streamed)

    # The same answer, non-streamed, through the whole-response translators.
    whole = codec(upstream).encode_response(accumulate(events, upstream.value))
    translated = json.loads(translate_response(upstream, client, json.dumps(whole).encode()))
    assert summary(client_side(client, streamed)) == summary(codec(client).decode_response(translated))


@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_chunk_boundaries_change_nothing(upstream, client):
    rng = random.Random(f"{upstream.value}->{client.value}")
    for scenario in SCENARIOS:
        data = upstream_stream(upstream, scenario(upstream))
        whole = translate_stream(upstream, client, data, [])
        # Every single split point (inside data: lines and multi-byte characters) ...
        for cut in range(1, len(data)):
            assert translate_stream(upstream, client, data, [cut]) == whole, (scenario.__name__, cut)
        # ... and random many-way splits, down to one byte at a time.
        for _ in range(20):
            cuts = sorted(rng.sample(range(1, len(data)), rng.randint(2, min(40, len(data) - 1))))
            assert translate_stream(upstream, client, data, cuts) == whole
        assert translate_stream(upstream, client, data, list(range(1, len(data)))) == whole


@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_upstream_cut_off_mid_stream_ends_in_an_error_not_a_success(upstream, client):
    data = upstream_stream(upstream, text_only(upstream))
    cut = data.index("wörld".encode()) + 2  # inside the ö
    streamed = translate_stream(upstream, client, data[:cut], [])
    response = client_side(client, streamed)
    assert response.stop_reason is StopReason.ERROR


@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_thinking_signatures_do_not_cross_providers(upstream, client):
    """A signature is bound to its provider: a client of another format must not receive one,
    or it would send it back and have the next request refused."""
    data = upstream_stream(upstream, thinking_then_text(upstream))
    streamed = client_side(client, translate_stream(upstream, client, data, []))
    whole = codec(upstream).encode_response(accumulate(thinking_then_text(upstream), upstream.value))
    translated = codec(client).decode_response(
        json.loads(translate_response(upstream, client, json.dumps(whole).encode()))
    )
    for response in (streamed, translated):
        signed = [p for p in response.parts if isinstance(p, (Thinking, ToolCall)) and p.signature]
        assert signed == []
