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
from translators import custom_tools
from translators.codec import codec
from translators.formats import CLIENT_ONLY, Format
from translators.jsonutil import partial_object
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


def tool_call_cut_off(origin: Format) -> list[Event]:
    """The token limit cuts a call half way through its arguments; prompt caching was used."""
    return [
        Start("msg_5", "model-x", created=1_750_000_000),
        BlockStart(0, "text"),
        Delta(0, text="Let me look."),
        BlockStop(0),
        BlockStart(1, "tool_call", id="call_cut", name="get_weather"),
        Delta(1, arguments='{"city": "Par'),
        BlockStop(1),
        Finish(StopReason.MAX_TOKENS, Usage(input_tokens=3000, output_tokens=9, cached_tokens=2048)),
    ]


def custom_tool_call(origin: Format) -> list[Event]:
    """A call of the client's custom (freeform) tool, its input streamed in pieces."""
    return [
        Start("msg_6", "model-x", created=1_750_000_000),
        BlockStart(0, "tool_call", id="call_patch", name="apply_patch"),
        Delta(0, arguments=custom_tools.OPEN),
        Delta(0, arguments=custom_tools.escape('*** Begin Patch\n*** Add File: "a.txt"\n')),
        Delta(0, arguments=custom_tools.escape("+héllo 🙂\n*** End Patch")),
        Delta(0, arguments=custom_tools.CLOSE),
        BlockStop(0),
        Finish(StopReason.TOOL_USE, _usage()),
    ]


SCENARIOS = [
    text_only,
    thinking_then_text,
    parallel_tool_calls,
    cut_off_by_max_tokens,
    tool_call_cut_off,
    custom_tool_call,
]


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch):
    # Encoders stamp `created` from the clock when the upstream did not say (Anthropic, Gemini).
    monkeypatch.setattr(time, "time", lambda: 1_750_000_000.0)


def _request() -> Request:
    patch = custom_tools.tool("apply_patch", "Edit files.", {"type": "text"})
    return Request(model="model-x", stream=True, stream_usage=True, tools=[patch])


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
            arguments = part.arguments
            if set(arguments) == {"_raw"}:  # cut off: as a client's partial parser reads it
                arguments = partial_object(arguments["_raw"])
            parts.append(("tool_call", part.name, json.dumps(arguments, sort_keys=True)))
    usage = response.usage
    return [
        *parts,
        ("stop", response.stop_reason),
        ("tokens", usage.input_tokens, usage.cached_tokens, usage.output_tokens),
    ]


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
    translated = json.loads(translate_response(upstream, client, json.dumps(whole).encode(), _request()))
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


def tool_call_cut_before_arguments(origin: Format) -> list[Event]:
    return [
        Start("msg_7", "model-x", created=1_750_000_000),
        BlockStart(0, "tool_call", id="call_empty", name="get_weather"),
        BlockStop(0),
        Finish(StopReason.MAX_TOKENS, _usage()),
    ]


def _client_view(client: Format, streamed: bytes, whole: dict) -> list[tuple[str, dict]]:
    """(how, what) pairs: the cut call and the stop as the client's own wire format says them."""
    views: list[tuple[str, dict]] = []
    payloads = check_stream(client, streamed)
    if client is Format.OPENAI_RESPONSES:
        final = payloads[-1]
        assert final["type"] == "response.incomplete"
        done = [p["item"] for p in payloads if p["type"] == "response.output_item.done"]
        for how, response in (("stream", final["response"]), ("whole", whole)):
            assert response["status"] == "incomplete"
            assert response["incomplete_details"] == {"reason": "max_output_tokens"}
            views.append((how, {"items": response["output"]}))
        views.append(("stream item done", {"items": done}))
    elif client is Format.OPENAI_CHAT:
        arguments = "".join(
            c["function"].get("arguments") or ""
            for p in payloads
            for ch in p.get("choices") or ()
            for c in ch["delta"].get("tool_calls") or ()
        )
        reasons = [ch["finish_reason"] for p in payloads for ch in p.get("choices") or () if ch["finish_reason"]]
        views.append(("stream", {"arguments": arguments, "finish": reasons[-1]}))
        choice = whole["choices"][0]
        call = choice["message"]["tool_calls"][-1]
        views.append(("whole", {"arguments": call["function"]["arguments"], "finish": choice["finish_reason"]}))
    elif client is Format.ANTHROPIC:
        arguments = "".join(
            p["delta"].get("partial_json") or "" for p in payloads if p["type"] == "content_block_delta"
        )
        stop = [p["delta"]["stop_reason"] for p in payloads if p["type"] == "message_delta"]
        views.append(("stream", {"arguments": arguments, "stop": stop[0]}))
        views.append(("whole", {"input": whole["content"][-1]["input"], "stop": whole["stop_reason"]}))
    else:
        calls = [p for c in payloads for cand in c["candidates"] for p in cand.get("content", {}).get("parts", ()) if "functionCall" in p]
        views.append(("stream", {"calls": calls, "finish": payloads[-1]["candidates"][0]["finishReason"]}))
        parts = whole["candidates"][0].get("content", {}).get("parts", ())
        views.append(("whole", {"calls": [p for p in parts if "functionCall" in p], "finish": whole["candidates"][0]["finishReason"]}))
    return views


@pytest.mark.parametrize("scenario,arrived", [(tool_call_cut_off, '{"city": "Par'), (tool_call_cut_before_arguments, "")])
@pytest.mark.parametrize("upstream,client", [p for p in PAIRS if p[0] is not Format.GEMINI], ids=lambda f: f.value)
def test_a_call_cut_off_by_the_token_limit_reaches_the_client_incomplete(upstream, client, scenario, arrived):
    """Never a finished call with invented arguments: an agent would run it."""
    events = scenario(upstream)
    streamed = translate_stream(upstream, client, upstream_stream(upstream, events), [])
    body = codec(upstream).encode_response(accumulate(events, upstream.value))
    whole = json.loads(translate_response(upstream, client, json.dumps(body).encode(), _request()))
    # What a whole Anthropic answer holds of a cut call is its input as far as it parses.
    exact = arrived if upstream is not Format.ANTHROPIC else None
    for how, view in _client_view(client, streamed, whole):
        if client is Format.OPENAI_RESPONSES:
            *finished, cut = view["items"]
            assert all(item["status"] == "completed" for item in finished), how
            assert (cut["type"], cut["status"]) == ("function_call", "incomplete"), how
            assert partial_object(cut["arguments"]) == partial_object(arrived), how
            if exact is not None or how != "whole":
                assert cut["arguments"] == arrived, how
        elif client is Format.OPENAI_CHAT:
            assert view["finish"] == "length", how
            if exact is not None or how != "whole":
                assert view["arguments"] == arrived, how
            assert partial_object(view["arguments"]) == partial_object(arrived), how
        elif client is Format.ANTHROPIC:
            assert view["stop"] == "max_tokens", how
            if how == "stream":
                assert view["arguments"] == arrived
            else:
                assert view["input"] == partial_object(arrived)
        else:
            # A Gemini functionCall is whole and gets run: a cut one is not sent at all.
            assert view == {"calls": [], "finish": "MAX_TOKENS"}, how


@pytest.mark.parametrize(
    "upstream,client", [p for p in PAIRS if p[1] is Format.OPENAI_RESPONSES], ids=lambda f: f.value
)
def test_text_cut_off_by_the_token_limit_is_an_incomplete_message(upstream, client):
    """Only the Responses API marks items; the others say it with their stop reason alone."""
    events = cut_off_by_max_tokens(upstream)
    streamed = check_stream(client, translate_stream(upstream, client, upstream_stream(upstream, events), []))
    body = codec(upstream).encode_response(accumulate(events, upstream.value))
    whole = json.loads(translate_response(upstream, client, json.dumps(body).encode(), _request()))
    done = [p["item"] for p in streamed if p["type"] == "response.output_item.done"]
    for output in (streamed[-1]["response"]["output"], whole["output"], done):
        assert [(item["type"], item["status"]) for item in output] == [("message", "incomplete")]


@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_a_custom_tool_call_reaches_the_client_with_its_input(upstream, client):
    patch = '*** Begin Patch\n*** Add File: "a.txt"\n+héllo 🙂\n*** End Patch'
    events = custom_tool_call(upstream)
    streamed = translate_stream(upstream, client, upstream_stream(upstream, events), [])
    payloads = check_stream(client, streamed)
    body = codec(upstream).encode_response(accumulate(events, upstream.value))
    whole = json.loads(translate_response(upstream, client, json.dumps(body).encode(), _request()))
    if client is Format.OPENAI_RESPONSES:
        (item,) = whole["output"]
        assert (item["type"], item["name"], item["input"], item["call_id"]) == (
            "custom_tool_call", "apply_patch", patch, "call_patch"
        )
        (final,) = streamed_items = [p["item"] for p in payloads if p["type"] == "response.output_item.done"]
        assert final == {**item, "id": final["id"]} and streamed_items[0]["status"] == "completed"
        deltas = "".join(p["delta"] for p in payloads if p["type"] == "response.custom_tool_call_input.delta")
        (done,) = [p for p in payloads if p["type"] == "response.custom_tool_call_input.done"]
        assert deltas == done["input"] == patch
        assert payloads[-1]["response"]["output"] == [final]
    elif client is Format.OPENAI_CHAT:
        (call,) = whole["choices"][0]["message"]["tool_calls"]
        assert call == {"id": "call_patch", "type": "custom", "custom": {"name": "apply_patch", "input": patch}}
        fragments = [c for p in payloads for ch in p.get("choices") or () for c in ch["delta"].get("tool_calls") or ()]
        assert fragments[0]["type"] == "custom" and fragments[0]["custom"]["name"] == "apply_patch"
        assert "".join(f["custom"]["input"] for f in fragments) == patch
        assert whole["choices"][0]["finish_reason"] == "tool_calls"
    else:
        # Formats without custom tools: a function of one string.
        response = codec(client).decode_response(whole)
        (call,) = response.parts
        assert (call.name, call.arguments) == ("apply_patch", {"input": patch})
        (streamed_call,) = client_side(client, streamed).parts
        assert streamed_call.arguments == {"input": patch}


@pytest.mark.parametrize("upstream,client", PAIRS, ids=lambda f: f.value)
def test_cached_prompt_tokens_keep_their_meaning(upstream, client):
    """Cached reads in each format's own field; the prompt total stays the whole prompt."""
    events = tool_call_cut_off(upstream)
    streamed = check_stream(client, translate_stream(upstream, client, upstream_stream(upstream, events), []))
    body = codec(upstream).encode_response(accumulate(events, upstream.value))
    whole = json.loads(translate_response(upstream, client, json.dumps(body).encode(), _request()))
    if client is Format.OPENAI_CHAT:
        usages = [whole["usage"], [p for p in streamed if p.get("usage")][-1]["usage"]]
        for usage in usages:
            assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (3000, 2048)
    elif client is Format.OPENAI_RESPONSES:
        for usage in (whole["usage"], streamed[-1]["response"]["usage"]):
            assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (3000, 2048)
    elif client is Format.ANTHROPIC:
        delta = [p for p in streamed if p["type"] == "message_delta"][0]
        for usage in (whole["usage"], delta["usage"]):
            assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (3000 - 2048, 2048)
    else:
        for meta in (whole["usageMetadata"], streamed[-1]["usageMetadata"]):
            assert (meta["promptTokenCount"], meta["cachedContentTokenCount"]) == (3000, 2048)
