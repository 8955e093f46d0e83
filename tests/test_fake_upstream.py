"""The fake upstream speaks each vendor's wire format: proven by pointing the official SDKs straight at it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes.upstream import FakeUpstream, split_text

TEXT = "Hello from the fake upstream"
ROOT = Path(__file__).resolve().parent.parent
# Not a real model name: anthropic 2.x warns (DeprecationWarning) on retired real ones.
CLAUDE = "claude-fake-1"

# Environment variables the SDKs read that would send requests elsewhere or change auth.
_SDK_ENV = (
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_API_VERSION",
    "GEMINI_API_KEY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream(text=TEXT) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> FakeUpstream:
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    server.clear()
    server.stream_events, server.event_delay, server.latency = 5, 0.0, 0.0
    return server


class Sdk:
    """Builds SDK clients aimed straight at the fake, with retries off, and closes them afterwards."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self._closers: list[Callable[[], None]] = []

    def openai_client(self, key: str = "sk-openai-1") -> openai.OpenAI:
        client = openai.OpenAI(api_key=key, base_url=f"{self.fake.base_url}/v1", max_retries=0)
        self._closers.append(client.close)
        return client

    def anthropic_client(self, key: str = "sk-ant-1") -> anthropic.Anthropic:
        client = anthropic.Anthropic(api_key=key, base_url=self.fake.base_url, max_retries=0)
        self._closers.append(client.close)
        return client

    def genai_client(self, key: str = "AIza-gem-1", api_version: str | None = None) -> genai.Client:
        # retry_options=None already means "never retry" in google-genai; attempts=1 says so explicitly.
        options = genai_types.HttpOptions(
            base_url=self.fake.base_url,
            api_version=api_version,
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        # Keeping a reference matters: a genai.Client closes its HTTP client when garbage-collected, so
        # `genai.Client(...).models.generate_content(...)` fails with "client has been closed".
        client = genai.Client(api_key=key, http_options=options)
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        for close in self._closers:
            close()


@pytest.fixture
def sdk(fake: FakeUpstream) -> Iterator[Sdk]:
    clients = Sdk(fake)
    yield clients
    clients.close()


# ---------------------------------------------------------------------------------------- text splitting


@pytest.mark.parametrize("n", [1, 2, 5, 27, 28, 29, 100])
def test_split_text_pieces_are_non_empty_and_rebuild_the_text(n: int) -> None:
    pieces = split_text(TEXT, n)
    assert len(pieces) == n
    assert all(pieces)
    joined = "".join(pieces)
    assert joined == TEXT if n <= len(TEXT) else joined.startswith(TEXT)


# ---------------------------------------------------------------------------------------- OpenAI chat


def test_openai_chat_non_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    completion = sdk.openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5
    (req,) = fake.requests
    assert (req.method, req.path, req.vendor) == ("POST", "/v1/chat/completions", "openai-chat")
    assert req.api_key == "sk-openai-1"
    assert req.headers["authorization"] == "Bearer sk-openai-1"
    assert req.json()["messages"] == [{"role": "user", "content": "hi"}]


def test_openai_chat_stream_with_usage(fake: FakeUpstream, sdk: Sdk) -> None:
    chunks = list(
        sdk.openai_client().chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert fake.keys_used() == ["sk-openai-1"]


def test_openai_chat_stream_helper_accumulates(fake: FakeUpstream, sdk: Sdk) -> None:
    with sdk.openai_client().chat.completions.stream(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-fake-events": "3"}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"


def test_openai_rate_limit(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.fail("sk-limited", 429, headers={"Retry-After": "30"})
    with pytest.raises(openai.RateLimitError) as excinfo:
        sdk.openai_client("sk-limited").chat.completions.create(model="gpt-4o", messages=[])
    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "30"
    assert excinfo.value.body == {  # the SDK unwraps {"error": {...}}
        "message": "Scripted failure: 429 Too Many Requests",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    # Other keys are unaffected.
    assert sdk.openai_client().chat.completions.create(model="gpt-4o", messages=[]).choices[0].message.content == TEXT
    assert fake.keys_used() == ["sk-limited", "sk-openai-1"]


# ---------------------------------------------------------------------------------------- OpenAI Responses


def test_openai_responses_non_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    response = sdk.openai_client().responses.create(model="gpt-5", input="hi", instructions="be brief")
    assert response.output_text == TEXT
    assert response.status == "completed"
    assert response.model == "gpt-5"
    assert response.instructions == "be brief"
    assert response.usage is not None
    assert response.usage.output_tokens == 5
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    (req,) = fake.requests
    assert (req.path, req.vendor, req.api_key) == ("/v1/responses", "openai-responses", "sk-openai-1")


def test_openai_responses_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    events = list(sdk.openai_client().responses.create(model="gpt-5", input="hi", stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == TEXT
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == TEXT
    assert completed.response.usage is not None and completed.response.usage.output_tokens == 5


def test_openai_responses_stream_helper_accumulates(fake: FakeUpstream, sdk: Sdk) -> None:
    # The helper cross-checks ids and indices across events, so it catches inconsistent streams.
    with sdk.openai_client().responses.stream(model="gpt-5", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == TEXT


def test_openai_responses_rate_limit(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.fail("sk-limited", 429, headers={"Retry-After": "30"}, times=1)
    client = sdk.openai_client("sk-limited")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-5", input="hi")
    assert client.responses.create(model="gpt-5", input="hi").output_text == TEXT  # times=1 ran out


# ---------------------------------------------------------------------------------------- Anthropic


def test_anthropic_messages_non_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    message = sdk.anthropic_client().messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.model == CLAUDE
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5 and message.usage.input_tokens > 0
    (req,) = fake.requests
    assert (req.path, req.vendor, req.api_key) == ("/v1/messages", "anthropic", "sk-ant-1")
    # anthropic 0.x sends x-api-key + anthropic-version 2023-06-01; 2.x sends Authorization: Bearer + 2026-10-21.
    assert req.headers.get("x-api-key") == "sk-ant-1" or req.headers.get("authorization") == "Bearer sk-ant-1"
    assert req.headers["anthropic-version"]


def test_anthropic_messages_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    with sdk.anthropic_client().messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 5 and "".join(deltas) == TEXT
    assert final.content[0].type == "text" and final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0


def test_anthropic_raw_stream_event_order(fake: FakeUpstream, sdk: Sdk) -> None:
    events = list(
        sdk.anthropic_client().messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK swallows `ping`


def test_anthropic_beta_path_and_count_tokens(fake: FakeUpstream, sdk: Sdk) -> None:
    client = sdk.anthropic_client()
    count = client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    beta = client.beta.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert count.input_tokens == max(1, len(fake.requests[0].body) // 4)
    assert beta.content[0].type == "text" and beta.content[0].text == TEXT
    assert [r.path for r in fake.requests] == ["/v1/messages/count_tokens", "/v1/messages"]
    assert fake.requests[1].query in ({"beta": "true"}, {})  # anthropic 0.x adds ?beta=true, 2.x does not
    with httpx.Client(base_url=fake.base_url) as raw:
        r = raw.post("/v1/messages?beta=true", json={"model": CLAUDE}, headers={"x-api-key": "sk-raw"})
    assert r.json()["content"][0]["text"] == TEXT
    assert (fake.requests[-1].vendor, fake.requests[-1].query) == ("anthropic", {"beta": "true"})


def test_anthropic_rate_limit(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.fail("sk-ant-limited", 429, headers={"Retry-After": "30"})
    with pytest.raises(anthropic.RateLimitError) as excinfo:
        sdk.anthropic_client("sk-ant-limited").messages.create(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert excinfo.value.response.headers["retry-after"] == "30"
    assert isinstance(excinfo.value.body, dict)
    assert excinfo.value.body["type"] == "error"
    assert excinfo.value.body["error"]["type"] == "rate_limit_error"


# ---------------------------------------------------------------------------------------- Gemini


def test_gemini_generate_content(fake: FakeUpstream, sdk: Sdk) -> None:
    client = sdk.genai_client()
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert response.text == TEXT
    assert response.candidates and response.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert response.model_version == "gemini-2.5-flash"
    assert response.usage_metadata is not None and response.usage_metadata.candidates_token_count == 5
    (req,) = fake.requests
    # google-genai 3.x defaults to api_version "v1", 2.x to "v1beta".
    assert req.path in (
        "/v1/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:generateContent",
    )
    assert (req.vendor, req.api_key) == ("gemini", "AIza-gem-1")
    assert req.headers["x-goog-api-key"] == "AIza-gem-1"
    assert req.json()["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_gemini_generate_content_stream(fake: FakeUpstream, sdk: Sdk) -> None:
    client = sdk.genai_client(api_version="v1beta")
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert len(chunks) == 5
    assert "".join(c.text or "" for c in chunks) == TEXT
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 5
    (req,) = fake.requests
    assert (req.path, req.query) == ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"alt": "sse"})


def test_gemini_count_tokens(fake: FakeUpstream, sdk: Sdk) -> None:
    client = sdk.genai_client()
    result = client.models.count_tokens(model="gemini-2.5-flash", contents="hi")
    assert result.total_tokens == max(1, len(fake.requests[0].body) // 4)
    assert fake.requests[0].path.endswith("/models/gemini-2.5-flash:countTokens")


def test_gemini_rate_limit(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.fail("AIza-limited", 429, headers={"Retry-After": "30"})
    client = sdk.genai_client("AIza-limited")
    with pytest.raises(genai_errors.ClientError) as excinfo:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert excinfo.value.code == 429
    assert excinfo.value.status == "RESOURCE_EXHAUSTED"
    assert excinfo.value.details["error"]["details"][0]["retryDelay"] == "30s"
    assert fake.keys_used() == ["AIza-limited"]  # and no retries


def test_gemini_json_array_stream_without_alt(fake: FakeUpstream) -> None:
    with httpx.Client(base_url=fake.base_url) as client:
        r = client.post(
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent", params={"key": "AIza-q"}, json={"contents": []}
        )
    chunks = json.loads(r.text)
    assert r.headers["transfer-encoding"] == "chunked"
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == TEXT
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in chunks[-1]
    assert fake.keys_used() == ["AIza-q"]


# ---------------------------------------------------------------------------------------- transport


def test_stream_is_delivered_incrementally(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.stream_events, fake.event_delay = 20, 0.05
    stream = sdk.openai_client().chat.completions.create(model="gpt-4o", messages=[], stream=True)
    arrivals: list[float] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 20
    assert fake.last_event_sent_at is not None
    # 20 deltas 50 ms apart: the first must be in hand about a second before the server finishes.
    assert fake.last_event_sent_at - arrivals[0] > 0.5
    assert arrivals[-1] - arrivals[0] > 0.5


def test_per_request_overrides(fake: FakeUpstream, sdk: Sdk) -> None:
    fake.latency = 0.0
    start = time.monotonic()
    events = list(
        sdk.anthropic_client().messages.create(
            model=CLAUDE,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"x-fake-events": "40", "x-fake-event-delay": "0.005", "x-fake-latency": "0.1"},
        )
    )
    assert time.monotonic() - start > 0.1 + 40 * 0.005 * 0.8
    deltas = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert len(deltas) == 40 and all(deltas)
    assert "".join(deltas) == fake.expected_stream_text(40)


def test_keep_alive_and_chunked_request_bodies(fake: FakeUpstream) -> None:
    before = fake.connections_opened
    with httpx.Client(base_url=fake.base_url) as client:
        for _ in range(3):
            # A generator body makes httpx send Transfer-Encoding: chunked.
            body = iter([b'{"model": "gpt-4o", ', b'"messages": []}'])
            r = client.post("/v1/chat/completions", content=body, headers={"authorization": "Bearer sk-chunked"})
            assert r.json()["choices"][0]["message"]["content"] == TEXT
            assert r.json()["model"] == "gpt-4o"
    assert fake.connections_opened - before == 1
    assert all(r.headers.get("transfer-encoding") == "chunked" for r in fake.requests)
    assert fake.requests[0].json() == {"model": "gpt-4o", "messages": []}


def test_unknown_path_and_listings(fake: FakeUpstream) -> None:
    with httpx.Client(base_url=fake.base_url) as client:
        missing = client.post("/v2/nothing", json={})
        openai_models = client.get("/v1/models", headers={"authorization": "Bearer sk-x"})
        anthropic_models = client.get("/v1/models", headers={"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"})
        gemini_models = client.get("/v1beta/models", headers={"x-goog-api-key": "AIza"})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert openai_models.json()["object"] == "list"
    assert anthropic_models.json()["data"][0]["type"] == "model"
    assert gemini_models.json()["models"][0]["name"].startswith("models/")


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type", "gemini_status"),
    [
        (400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
        (401, "authentication_error", "authentication_error", "UNAUTHENTICATED"),
        (403, "permission_error", "permission_error", "PERMISSION_DENIED"),
        (404, "invalid_request_error", "not_found_error", "NOT_FOUND"),
        (500, "server_error", "api_error", "INTERNAL"),
        (503, "server_error", "overloaded_error", "UNAVAILABLE"),
    ],
)
def test_error_shapes(
    fake: FakeUpstream, status: int, openai_type: str, anthropic_type: str, gemini_status: str
) -> None:
    fake.fail("k", status)
    with httpx.Client(base_url=fake.base_url) as client:
        o = client.post("/v1/chat/completions", json={}, headers={"authorization": "Bearer k"})
        a = client.post("/v1/messages", json={}, headers={"x-api-key": "k"})
        g = client.post("/v1beta/models/m:generateContent", json={}, headers={"x-goog-api-key": "k"})
    assert {o.status_code, a.status_code, g.status_code} == {status}
    assert o.json()["error"]["type"] == openai_type
    assert a.json()["error"]["type"] == anthropic_type
    assert g.json()["error"] == {"code": status, "message": g.json()["error"]["message"], "status": gemini_status}


def test_failures_queue_and_custom_body(fake: FakeUpstream) -> None:
    fake.fail("k", 500, times=1)
    fake.fail("k", 401, body=b'{"detail": "nope"}', times=1)
    with httpx.Client(base_url=fake.base_url, headers={"authorization": "Bearer k"}) as client:
        statuses = [client.post("/v1/responses", json={"model": "m"}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [500, 401, 200]
    assert statuses[1].json() == {"detail": "nope"}
    fake.fail("k", 429)
    fake.clear()
    assert fake.requests == []
    with httpx.Client(base_url=fake.base_url, headers={"authorization": "Bearer k"}) as client:
        assert client.post("/v1/responses", json={"model": "m"}).status_code == 200


def _sse_payloads(text: str) -> list[Any]:
    payloads = []
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[6:] for line in frame.split("\n") if line.startswith("data: ")]
        if data and data[0] != "[DONE]":
            payloads.append(json.loads("\n".join(data)))
    return payloads


def test_payloads_validate_strictly_against_sdk_types(fake: FakeUpstream) -> None:
    # The SDKs build response objects without validation, so a missing required field would go
    # unnoticed above; validating against their pydantic types catches it.
    from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.responses import Response, ResponseStreamEvent

    stream_event = pydantic.TypeAdapter(ResponseStreamEvent)
    raw_event = pydantic.TypeAdapter(RawMessageStreamEvent)
    with httpx.Client(base_url=fake.base_url) as c:
        ChatCompletion.model_validate(c.post("/v1/chat/completions", json={"model": "m"}).json())
        chat_stream = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
        for payload in _sse_payloads(c.post("/v1/chat/completions", json=chat_stream).text):
            ChatCompletionChunk.model_validate(payload)
        Response.model_validate(c.post("/v1/responses", json={"model": "m"}).json())
        for payload in _sse_payloads(c.post("/v1/responses", json={"model": "m", "stream": True}).text):
            stream_event.validate_python(payload)
        Message.model_validate(c.post("/v1/messages", json={"model": "m"}).json())
        for payload in _sse_payloads(c.post("/v1/messages", json={"model": "m", "stream": True}).text):
            if payload["type"] != "ping":  # not part of the SDK's event union
                raw_event.validate_python(payload)
        MessageTokensCount.model_validate(c.post("/v1/messages/count_tokens", json={"model": "m"}).json())
        # genai's models forbid unknown fields, so this also catches misspelled camelCase names.
        genai_types.GenerateContentResponse.model_validate(c.post("/v1beta/models/g:generateContent", json={}).json())
        for payload in _sse_payloads(c.post("/v1beta/models/g:streamGenerateContent?alt=sse", json={}).text):
            genai_types.GenerateContentResponse.model_validate(payload)
        genai_types.CountTokensResponse.model_validate(c.post("/v1beta/models/g:countTokens", json={}).json())


# ---------------------------------------------------------------------------------------- own process


def test_process_fails_the_given_keys_on_every_request_and_counts_them() -> None:
    # `python -m tests.fakes.upstream --fail KEY=STATUS`, as scripts/bench starts it.
    cmd = [sys.executable, "-m", "tests.fakes.upstream", "--fail", "sk-ant-failing=429", "--fail", "sk-dead=503"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        body = {"model": CLAUDE, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}

        def post(key: str) -> httpx.Response:
            return client.post("/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"})

        with httpx.Client(base_url=base_url) as client:
            limited = [post("sk-ant-failing") for _ in range(3)]
            healthy, dead = post("sk-ant-healthy"), post("sk-dead")
        assert [r.status_code for r in limited] == [429, 429, 429]  # not used up: every request
        assert limited[0].json()["error"]["type"] == "rate_limit_error"
        assert "retry-after" not in limited[0].headers
        assert healthy.status_code == 200 and "event: message_stop" in healthy.text
        assert dead.status_code == 503
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert out.strip().splitlines()[-1] == "answered 4 requests with a --fail status"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_process_refuses_a_malformed_fail_option_without_echoing_it() -> None:
    for value in ("sk-secret-value", "sk-secret-value=200", "=429"):
        r = subprocess.run(
            [sys.executable, "-m", "tests.fakes.upstream", "--fail", value],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert r.returncode == 2
        assert "expected KEY=STATUS with a 4xx or 5xx status" in r.stderr
        assert "secret" not in r.stderr
