"""A Code Assist client (Gemini CLI signed in with Google, `POST /v1internal:{action}`) served by
the pool: recognising its calls, taking the Gemini call out of the envelope, handing it to another
Code Assist account, and wrapping the answers back."""

from __future__ import annotations

import json

import pytest

from auth.credential import Credential
from routing import legs
from routing.endpoints import Kind, guess_format, match
from routing.router import Route
from routing.upstream import ClientRequest
from translators import code_assist
from translators.formats import Format
from translators.translate import TranslationError

GEMINI_KEY = Credential(provider="gemini", source="gemini-api-key[0]", secret="AIza-pool")
CLAUDE_KEY = Credential(provider="claude", source="claude-api-key[0]", secret="sk-ant-pool")
GEMINI_CLI = Credential(provider="gemini-cli", source="me.json", secret="ya29.pool", kind="oauth",
                        path="/auth/me.json", project_id="pool-project")

# As Gemini CLI writes it (JSON.stringify: compact, its own key order).
INNER = {
    "contents": [{"role": "user", "parts": [{"text": "hi ✓"}]}],
    "generationConfig": {"temperature": 0, "thinkingConfig": {"includeThoughts": True}},
    "session_id": "5e1f0c2a",
}
ENVELOPE = {"model": "gemini-2.5-pro", "project": "cli-own-project", "user_prompt_id": "p#1", "request": INNER}
RAW = json.dumps(ENVELOPE, ensure_ascii=False, separators=(",", ":")).encode()
COUNT = {"request": {"model": "models/gemini-2.5-pro", "contents": INNER["contents"]}}


def call(action: str, body: dict | bytes = ENVELOPE, query: tuple = ()) -> ClientRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    parsed = json.loads(raw)
    endpoint = match("POST", f"/v1internal:{action}", {})
    assert endpoint is not None
    headers = {"authorization": "Bearer ya29.the-cli-own", "user-agent": "GeminiCLI/0.61.0/gemini-2.5-pro (linux; x64)"}
    return ClientRequest(
        endpoint, code_assist.envelope_model(parsed) or "", endpoint.streams_by_path, "POST",
        f"/v1internal:{action}", query, headers, tuple(headers.items()), raw, parsed,
    )


def sse_events(body: bytes) -> list[dict]:
    """The events as Gemini CLI reads them: `data: ` lines, a blank line ending each."""
    events, lines = [], []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            lines.append(line[6:].strip())
        elif line == "" and lines:
            events.append(json.loads("\n".join(lines)))
            lines = []
    assert not lines
    return events


# -- recognising the calls -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind"),
    [("generateContent", Kind.GENERATE), ("streamGenerateContent", Kind.GENERATE), ("countTokens", Kind.COUNT_TOKENS)],
)
def test_model_calls_are_code_assist_gemini_endpoints(action, kind):
    endpoint = match("POST", f"/v1internal:{action}", {})
    assert endpoint is not None
    assert (endpoint.kind, endpoint.format, endpoint.code_assist, endpoint.action) == (kind, Format.GEMINI, True, action)
    assert endpoint.model is None  # in the body
    assert endpoint.streams_by_path == (action == "streamGenerateContent")


@pytest.mark.parametrize(
    "path",
    ["/v1internal:loadCodeAssist", "/v1internal:onboardUser", "/v1internal:listExperiments",
     "/v1internal:retrieveUserQuota", "/v1internal:recordCodeAssistMetrics", "/v1internal/operations/x"],
)
def test_the_accounts_own_calls_are_not_model_calls(path):
    assert match("POST", path, {}) is None
    assert match("GET", path, {}) is None
    assert guess_format(path, {}) is Format.GEMINI


def test_the_model_comes_from_the_envelope():
    assert code_assist.envelope_model(ENVELOPE) == "gemini-2.5-pro"
    assert code_assist.envelope_model(COUNT) == "gemini-2.5-pro"
    assert code_assist.envelope_model({"request": {}}) is None
    assert code_assist.envelope_model({"model": "", "request": "x"}) is None


# -- the envelope, both ways ---------------------------------------------------------------------


def test_unwrap_drops_what_only_code_assist_accepts():
    body, parsed = code_assist.unwrap_request({**ENVELOPE, "request": {**INNER, "labels": {"a": "b"}}}, False)
    assert parsed == {k: v for k, v in INNER.items() if k != "session_id"}
    assert json.loads(body) == parsed
    _, for_vertex = code_assist.unwrap_request({**ENVELOPE, "request": {**INNER, "labels": {"a": "b"}}}, False, True)
    assert for_vertex["labels"] == {"a": "b"} and "session_id" not in for_vertex
    body, parsed = code_assist.unwrap_request(COUNT, True)
    assert parsed == {"contents": INNER["contents"]}  # the Gemini API takes the model from the path
    with pytest.raises(ValueError, match="request"):
        code_assist.unwrap_request({"model": "m", "request": []}, False)


def test_retarget_changes_the_project_bytes_only():
    pretty = json.dumps(ENVELOPE, indent=2, ensure_ascii=False).encode()
    for raw in (RAW, pretty):
        out = code_assist.retarget(raw, json.loads(raw), "gemini-2.5-pro", "pool-project", False)
        assert out == raw.replace(b'"cli-own-project"', b'"pool-project"')


def test_retarget_follows_an_alias_and_a_missing_project():
    out = code_assist.retarget(RAW, ENVELOPE, "gemini-2.5-flash", "pool-project", False)
    assert out == RAW.replace(b'"cli-own-project"', b'"pool-project"').replace(b'"gemini-2.5-pro"', b'"gemini-2.5-flash"')
    dropped = json.loads(code_assist.retarget(RAW, ENVELOPE, "gemini-2.5-pro", "", False))
    assert "project" not in dropped and dropped["request"] == INNER
    raw = json.dumps(COUNT).encode()
    assert code_assist.retarget(raw, COUNT, "gemini-2.5-pro", "pool-project", True) == raw  # no project there
    aliased = json.loads(code_assist.retarget(raw, COUNT, "gemini-2.5-flash", "pool-project", True))
    assert aliased == {"request": {"model": "models/gemini-2.5-flash", "contents": INNER["contents"]}}


def test_wrap_body_copies_the_answer_and_its_response_id():
    answer = b'{"candidates": [{"content": {"parts": [{"text": "ok"}]}}], "modelVersion": "m", "responseId": "r-1"}\n'
    wrapped = code_assist.wrap_body(answer)
    assert wrapped == b'{"response":' + answer.strip() + b',"traceId":"r-1"}'
    assert json.loads(wrapped)["response"] == json.loads(answer)
    assert code_assist.wrap_body(b'{"candidates":[]}') == b'{"response":{"candidates":[]}}'
    error = b'{\n  "error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}\n}'
    assert code_assist.wrap_body(error) == error.strip()


def test_wrapper_wraps_each_event_across_any_chunking():
    stream = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"He"}]}}],"responseId":"r-9"}\r\n\r\n'
        b": keep-alive\r\n\r\n"
        b'data: {"candidates":[{"content":{"parts":[{"text":"llo"}]}}],"responseId":"r-9"}\r\n\r\n'
        b'data: {"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"totalTokenCount":3},"responseId":"r-9"}'
    )  # no blank line after the last event
    whole = code_assist.Wrapper()
    expected = whole(stream) + whole(b"")
    for size in (1, 7, 50):
        wrapper = code_assist.Wrapper()
        out = [piece for i in range(0, len(stream), size) for piece in wrapper(stream[i:i + size])]
        out += wrapper(b"")
        assert b"".join(out) == b"".join(expected)
        assert all(out)  # never an empty chunk: it would end mitmproxy's chunked response
    events = sse_events(b"".join(expected))
    assert [e["traceId"] for e in events] == ["r-9"] * 3
    assert "".join(p["text"] for e in events[:2] for p in e["response"]["candidates"][0]["content"]["parts"]) == "Hello"
    assert events[2]["response"]["usageMetadata"] == {"totalTokenCount": 3}


def test_wrapper_passes_errors_and_joins_multiline_data():
    wrapper = code_assist.Wrapper()
    out = b"".join(
        wrapper(b'data: {"candidates":\ndata: []}\n\n')
        + wrapper(b'data: {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}\n\n')
        + wrapper(b"")
    )
    assert sse_events(out) == [{"response": {"candidates": []}}, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}]
    assert b"\ndata: []" not in out


def test_wrapper_writes_the_json_array_without_alt_sse():
    wrapper = code_assist.Wrapper(sse=False)
    out = b"".join(wrapper(b'data: {"a":1}\n\ndata: {"b":2}\n\n') + wrapper(b""))
    assert json.loads(out) == [{"response": {"a": 1}}, {"response": {"b": 2}}]
    empty = code_assist.Wrapper(sse=False)
    assert b"".join(empty(b"")) == b"[]"


# -- plans -----------------------------------------------------------------------------------------


def plan(client: ClientRequest, cred: Credential, model: str = "gemini-2.5-pro") -> legs.Leg:
    return legs.plan(client, Route(cred, model), {})


def test_on_a_gemini_api_key_the_gemini_call_inside_goes_as_it_is():
    leg = plan(call("generateContent"), GEMINI_KEY)
    assert leg.target.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert leg.target.auth_headers == {"x-goog-api-key": "AIza-pool"}
    assert json.loads(leg.body) == {k: v for k, v in INNER.items() if k != "session_id"}
    assert leg.request is None and leg.client_envelope and leg.converts
    assert leg.description == "code-assist -> gemini (envelope only)"
    assert legs.request_headers(leg)["accept-encoding"] == "identity"

    answer = b'{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP"}],"responseId":"r1"}'
    content_type, body = legs.whole_response(leg, call("generateContent"), 200, answer)
    assert content_type == "application/json"
    assert body == b'{"response":' + answer + b',"traceId":"r1"}'


def test_a_stream_on_a_gemini_api_key_asks_for_sse_and_is_wrapped_per_event():
    client = call("streamGenerateContent", query=(("alt", "sse"),))
    leg = plan(client, GEMINI_KEY)
    assert leg.target.url.endswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    translator = legs.stream_translator(leg, client)
    out = b"".join(translator(b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}]}\r\n\r\n') + translator(b""))
    assert out == b'data: {"response":{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}}\r\n\r\n'
    assert legs.stream_content_type(client) == "text/event-stream"
    # Without alt=sse the client gets a JSON array; the upstream is still asked for SSE.
    array_client = call("streamGenerateContent")
    leg = plan(array_client, GEMINI_KEY)
    assert leg.target.url.endswith(":streamGenerateContent?alt=sse")
    translator = legs.stream_translator(leg, array_client)
    out = b"".join(translator(b'data: {"candidates":[]}\n\n') + translator(b""))
    assert json.loads(out) == [{"response": {"candidates": []}}]


def test_count_tokens_on_a_gemini_api_key():
    client = call("countTokens", COUNT)
    leg = plan(client, GEMINI_KEY)
    assert leg.target.url.endswith("/v1beta/models/gemini-2.5-pro:countTokens")
    assert json.loads(leg.body) == {"contents": INNER["contents"]}
    answer = b'{"totalTokens": 7, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]}'
    assert legs.whole_response(leg, client, 200, answer) == ("application/json", b'{"totalTokens":7}')


def test_on_a_code_assist_login_only_the_token_and_project_change():
    for action, query in (("generateContent", ()), ("streamGenerateContent", (("alt", "sse"),))):
        client = call(action, RAW, query)
        leg = plan(client, GEMINI_CLI)
        suffix = "?alt=sse" if query else ""
        assert leg.target.url == f"https://cloudcode-pa.googleapis.com/v1internal:{action}{suffix}"
        assert leg.target.auth_headers == {"authorization": "Bearer ya29.pool"}
        assert leg.body == RAW.replace(b'"cli-own-project"', b'"pool-project"')
        assert not leg.converts and legs.request_headers(leg) == {}
        assert leg.description == "none (code-assist passthrough)"
    count = plan(call("countTokens", COUNT), GEMINI_CLI)
    assert count.target.url == "https://cloudcode-pa.googleapis.com/v1internal:countTokens"
    assert count.body == json.dumps(COUNT, ensure_ascii=False, separators=(",", ":")).encode()


def test_an_antigravity_login_gets_its_own_envelope_and_its_answers_pass_through():
    antigravity = Credential(provider="antigravity", source="ag.json", secret="ya29.ag", kind="oauth",
                             path="/auth/ag.json", project_id="ag-project")
    client = call("streamGenerateContent", RAW, (("alt", "sse"),))
    leg = plan(client, antigravity)
    assert leg.target.url.endswith("/v1internal:streamGenerateContent?alt=sse")
    assert leg.target.auth_headers == {"authorization": "Bearer ya29.ag"}
    sent = json.loads(leg.body)
    assert (sent["model"], sent["project"]) == ("gemini-2.5-pro", "ag-project")
    assert sent["request"] == {k: v for k, v in INNER.items() if k != "session_id"}
    assert not leg.converts  # Antigravity answers in the envelope the client reads


def test_a_reasoning_suffix_on_a_code_assist_login_is_translated_and_wrapped_back():
    client = call("generateContent")
    leg = plan(client, GEMINI_CLI, "gemini-2.5-pro(high)")
    assert leg.translated and leg.envelope and leg.client_envelope and leg.converts
    sent = json.loads(leg.body)
    assert (sent["model"], sent["project"]) == ("gemini-2.5-pro", "pool-project")
    assert leg.description == "code-assist -> code-assist"
    upstream = b'{"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],"responseId":"r2"},"traceId":"t2"}'
    _, body = legs.whole_response(leg, client, 200, upstream)
    wrapped = json.loads(body)
    assert wrapped["response"]["candidates"][0]["content"]["parts"] == [{"text": "ok"}]
    assert wrapped["traceId"] == wrapped["response"]["responseId"]


def test_another_provider_translates_and_wraps_back():
    client = call("streamGenerateContent", query=(("alt", "sse"),))
    leg = plan(client, CLAUDE_KEY, "claude-sonnet-4-5")
    assert leg.target.url == "https://api.anthropic.com/v1/messages"
    sent = json.loads(leg.body)
    assert sent["model"] == "claude-sonnet-4-5" and sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi ✓"}]}]
    assert leg.description == "code-assist -> anthropic"
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
        b'"model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    translator = legs.stream_translator(leg, client)
    events = sse_events(b"".join(translator(stream) + translator(b"")))
    assert events and all(set(e) <= {"response", "traceId"} for e in events)
    text = "".join(p.get("text", "") for e in events for p in e["response"]["candidates"][0]["content"]["parts"])
    assert text == "Hi"
    assert events[-1]["response"]["candidates"][0]["finishReason"] == "STOP"
    # Read whole (a retried stream): the same events.
    assert sse_events(legs.whole_response(leg, client, 200, stream)[1]) == events


def test_count_tokens_on_a_provider_that_cannot_count_is_estimated_unwrapped():
    compat = Credential(provider="openai-compatibility", source="compat", secret="k", base_url="http://x/v1")
    leg = plan(call("countTokens", COUNT), compat, "gpt-x")
    answer = json.loads(leg.local_answer or b"")
    assert list(answer) == ["totalTokens"] and answer["totalTokens"] > 0


def test_errors_keep_googles_shape_unwrapped():
    client = call("generateContent")
    for cred, body in ((GEMINI_KEY, b'{"error":{"code":400,"message":"bad thing","status":"INVALID_ARGUMENT"}}'),
                       (CLAUDE_KEY, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad thing"}}')):
        leg = plan(client, cred)
        _, out = legs.whole_response(leg, client, 400, body)
        assert json.loads(out) == {"error": {"code": 400, "message": "bad thing", "status": "INVALID_ARGUMENT"}}


def test_an_envelope_without_a_request_is_a_400():
    client = call("generateContent", {"model": "gemini-2.5-pro", "project": "p"})
    with pytest.raises(TranslationError, match="request"):
        plan(client, GEMINI_KEY)
