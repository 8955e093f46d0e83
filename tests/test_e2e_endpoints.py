"""Every listener endpoint, same format end to end, through a real mitmdump and the official SDKs."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

CLIENT_KEY = "client-key-for-tests-0001"
CLAUDE_KEY = "sk-ant-endpoint-test-claude-0001"
GEMINI_KEY = "AIza-endpoint-test-gemini-0001"
CODEX_KEY = "sk-endpoint-test-codex-0001"
COMPAT_KEY = "sk-endpoint-test-compat-0001"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(
        {
            "api-keys": [CLIENT_KEY],
            "claude-api-key": [{"api-key": CLAUDE_KEY}],
            "gemini-api-key": [{"api-key": GEMINI_KEY}],
            "codex-api-key": [{"api-key": CODEX_KEY}],
            "openai-compatibility": [
                {
                    "name": "compat",
                    "base-url": fake.base_url + "/v1",
                    "api-key-entries": [{"api-key": COMPAT_KEY}],
                    "models": [{"name": "upstream-chat-model", "alias": "chat-model"}],
                }
            ],
            "upstream-overrides": vendor_overrides(fake),
        },
        extra_args=("--set", "flow_detail=0"),
    )


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


@pytest.fixture
def oai(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url + "/v1", max_retries=0)


@pytest.fixture
def claude(proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)


@pytest.fixture
def gemini(proxy) -> genai.Client:
    return genai.Client(
        api_key=CLIENT_KEY,
        http_options=genai_types.HttpOptions(
            base_url=proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )


# -- OpenAI Chat Completions (openai-compatibility) ------------------------------------------


def test_chat_completion_resolves_the_alias(oai, fake):
    result = oai.chat.completions.create(
        model="chat-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert result.choices[0].message.content == fake.text
    assert result.usage is not None and result.usage.completion_tokens > 0
    (seen,) = fake.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.api_key == COMPAT_KEY
    assert seen.json()["model"] == "upstream-chat-model"
    assert seen.json()["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_completion_stream(oai, fake):
    stream = oai.chat.completions.create(
        model="chat-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake.expected_stream_text()
    assert chunks[-1].usage is not None
    assert fake.requests[0].json()["stream"] is True


# -- OpenAI Responses (codex-api-key) ------------------------------------------------------------


def test_responses(oai, fake):
    result = oai.responses.create(model="gpt-5", input="hi")
    assert result.output_text == fake.text
    (seen,) = fake.requests
    assert (seen.path, seen.api_key) == ("/v1/responses", CODEX_KEY)


def test_responses_stream(oai, fake):
    events = list(oai.responses.create(model="gpt-5", input="hi", stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == fake.expected_stream_text()
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == fake.expected_stream_text()


# -- Anthropic Messages (claude-api-key) ---------------------------------------------------------


def test_messages(claude, fake):
    message = claude.messages.create(
        model="claude-test-1", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == fake.text
    assert message.stop_reason == "end_turn"
    (seen,) = fake.requests
    assert seen.path == "/v1/messages"
    assert seen.api_key == CLAUDE_KEY
    assert seen.headers["x-api-key"] == CLAUDE_KEY
    assert "authorization" not in seen.headers  # the client's proxy key stays here
    assert CLIENT_KEY not in json.dumps(seen.headers)


def test_messages_stream(claude, fake):
    with claude.messages.stream(
        model="claude-test-1", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == fake.expected_stream_text()
    assert final.usage.output_tokens > 0


def test_count_tokens(claude, fake):
    result = claude.messages.count_tokens(
        model="claude-test-1", messages=[{"role": "user", "content": "hello there"}]
    )
    (seen,) = fake.requests
    assert seen.path == "/v1/messages/count_tokens"
    assert result.input_tokens == max(1, len(seen.body) // 4)


def test_same_format_body_goes_upstream_byte_for_byte(proxy, fake):
    # Odd spacing, key order, escapes and a thinking signature: all must survive untouched.
    body = (
        b'{"max_tokens": 5 ,"model":"claude-test-1",\n  "messages":[{"role":"user",'
        b'"content":[{"type":"thinking","thinking":"\\u00e9t\\u00e9","signature":"EqQBCkgIARAB"},'
        b'{"type":"text","text":"hi"}]}]}'
    )
    r = proxy.post(
        "/v1/messages",
        content=body,
        headers={**AUTH, "content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200
    assert fake.requests[0].body == body


# -- Gemini (gemini-api-key) ---------------------------------------------------------------------


def test_generate_content(gemini, fake):
    result = gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert result.text == fake.text
    (seen,) = fake.requests
    assert seen.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert seen.api_key == GEMINI_KEY
    assert "key" not in seen.query


def test_generate_content_stream(gemini, fake):
    chunks = list(gemini.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == fake.expected_stream_text()
    assert fake.requests[0].query.get("alt") == "sse"


def test_stream_generate_content_as_json_array(proxy, fake):
    """Without `alt=sse` Gemini streams one JSON array; the key may come as `?key=`."""
    r = proxy.post(
        f"/v1beta/models/gemini-2.5-flash:streamGenerateContent?key={CLIENT_KEY}",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )
    assert r.status_code == 200
    chunks = r.json()
    assert isinstance(chunks, list)
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == fake.expected_stream_text()
    assert fake.requests[0].query.get("key") is None  # the client's key does not travel upstream


def test_gemini_count_tokens(gemini, fake):
    result = gemini.models.count_tokens(model="gemini-2.5-flash", contents="hello")
    assert result.total_tokens == max(1, len(fake.requests[0].body) // 4)


# -- listings and health -----------------------------------------------------------------------


def test_openai_model_listing(oai):
    ids = {m.id for m in oai.models.list()}
    assert {"chat-model", "gpt-5"} <= ids


def test_anthropic_model_listing(claude):
    # Keys without a `models` list show their vendor's known models; every model reachable
    # from the pool is listed, whichever provider serves it.
    models = list(claude.models.list())
    assert models and all(m.type == "model" for m in models)
    ids = {m.id for m in models}
    assert any(i.startswith("claude-") for i in ids)
    assert {"chat-model", "gemini-2.5-flash"} <= ids


def test_gemini_model_listing(gemini):
    names = {m.name for m in gemini.models.list()}
    assert "models/gemini-2.5-flash" in names


def test_healthz(proxy):
    r = proxy.get("/healthz", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


# -- streaming is incremental ------------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/messages", {"model": "claude-test-1", "max_tokens": 9, "stream": True, "messages": HI}),
        ("/v1/chat/completions", {"model": "chat-model", "stream": True, "messages": HI}),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {"contents": [{"parts": [{"text": "hi"}]}]}),
    ],
)
def test_first_event_arrives_before_the_upstream_sends_its_last(proxy, fake, path, body):
    headers = {**AUTH, "x-fake-events": "20", "x-fake-event-delay": "0.05"}
    first_event_at = None
    with httpx.stream("POST", proxy.base_url + path, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and first_event_at is None:
                first_event_at = time.monotonic()
    assert first_event_at is not None and fake.last_event_sent_at is not None
    # 20 events 50 ms apart: the first must be in hand about a second before the last leaves.
    assert fake.last_event_sent_at - first_event_at > 0.5


def test_overhead_header(proxy, claude):
    raw = claude.messages.with_raw_response.create(
        model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert float(raw.headers["x-cliproxy-overhead-ms"]) >= 0
