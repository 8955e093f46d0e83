"""translators/terminal.py: a passed-through stream cut short ends with its format's error."""

from __future__ import annotations

import json

import pytest

from translators.formats import Format
from translators.terminal import TerminalWatch, cut_event

# Complete streams, one event per item; the last item is (or holds) the terminal event. The
# text of each mentions the terminal markers, escaped as JSON strings carry them.
TRAP = 'say \\"finish_reason\\": \\"stop\\" and \\"type\\": \\"message_stop\\" and [DONE]'
STREAMS: dict[Format, list[bytes]] = {
    Format.OPENAI_CHAT: [
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"' + TRAP.encode() + b'"},"finish_reason":null}]}\n\n',
        b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ],
    Format.ANTHROPIC: [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","content":[]}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"' + TRAP.encode() + b'"}}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ],
    Format.OPENAI_RESPONSES: [
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_abc","object":"response","status":"in_progress","output":[]}}\n\n',
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"' + TRAP.encode() + b'"}\n\n',
        b'event: response.completed\ndata: {"type":"response.completed","sequence_number":2,"response":{"id":"resp_abc","status":"completed","output":[]}}\n\n',
    ],
    Format.GEMINI: [
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"' + TRAP.encode() + b'"}]}}]}\n\n',
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},"finishReason": "STOP"}]}\n\n',
    ],
}


# Where each stream's end is first recognisable (a chat stream's `finish_reason` ends it too).
TERMINAL_AT = {Format.OPENAI_CHAT: 2, Format.ANTHROPIC: 3, Format.OPENAI_RESPONSES: 2, Format.GEMINI: 1}


def run(fmt: Format, chunks: list[bytes], why: str | None = None) -> bytes:
    watch = TerminalWatch(fmt, True, lambda: why)
    out = []
    for chunk in chunks:
        result = watch(chunk)
        assert result == chunk  # passed on untouched, not copied into a list
        out.append(result)
    out.extend(watch(b""))
    return b"".join(out)


@pytest.mark.parametrize("fmt", list(STREAMS))
def test_a_complete_stream_passes_untouched_however_it_is_split(fmt):
    whole = b"".join(STREAMS[fmt])
    assert run(fmt, [whole]) == whole
    for cut in range(1, len(whole)):
        assert run(fmt, [whole[:cut], whole[cut:]]) == whole
    assert run(fmt, [bytes([b]) for b in whole]) == whole


def _events(data: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize("fmt", list(STREAMS))
def test_a_stream_cut_before_its_end_gets_one_error_event_last(fmt):
    events = STREAMS[fmt]
    for kept in range(TERMINAL_AT[fmt]):
        sent = b"".join(events[: kept + 1])
        out = run(fmt, [sent], "the upstream connection was lost (connection reset)")
        assert out.startswith(sent)
        tail = out[len(sent):]
        (error,) = _events(tail)
        text = json.dumps(error)
        assert "cut off: the upstream connection was lost (connection reset)" in text
        if fmt is Format.ANTHROPIC:
            assert tail.startswith(b"event: error\n") and error["error"]["type"] == "api_error"
        elif fmt is Format.OPENAI_RESPONSES:
            assert error["type"] == "response.failed" and error["response"]["status"] == "failed"
            # The failure names the response the stream began, and follows on from its events.
            assert error["response"]["id"] == "resp_abc"
            assert error["sequence_number"] == kept + 1
        elif fmt is Format.GEMINI:
            assert error["error"]["code"] == 502
        else:
            assert error["error"]["type"] == "server_error"


def test_an_early_clean_end_is_named_as_such():
    out = run(Format.ANTHROPIC, STREAMS[Format.ANTHROPIC][:2])
    assert b"the upstream ended the stream early" in out


def test_an_error_the_upstream_sent_itself_is_its_own_end():
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    sent = STREAMS[Format.ANTHROPIC][0] + error
    assert run(Format.ANTHROPIC, [sent]) == sent


def test_a_gemini_json_array_gets_its_error_as_the_last_element():
    watch = TerminalWatch(Format.GEMINI, False, lambda: None)
    first = b'[{"candidates":[{"content":{"parts":[{"text":"hi"}]}}]}'
    out = watch(first) + b"".join(watch(b""))
    parsed = json.loads(out)
    assert parsed[-1]["error"]["code"] == 502


def test_cut_event_shapes():
    assert cut_event(Format.OPENAI_CHAT, "x").startswith(b'data: {"error":')
    assert cut_event(Format.GEMINI, "x", sse=False).endswith(b"]")
