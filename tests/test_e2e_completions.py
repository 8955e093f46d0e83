"""The legacy Completions API (`/v1/completions`, client-only) through a real mitmdump, with the
official OpenAI SDK, served by a Claude key."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

CLAUDE = "sk-ant-completions-test-0001"


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(
        {"claude-api-key": [{"api-key": CLAUDE}], "upstream-overrides": vendor_overrides(fake)}
    )


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


@pytest.fixture
def oai(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0)


def test_completion_served_by_a_claude_key(oai, fake):
    result = oai.completions.create(model="claude-test-1", prompt="hi")
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    assert result.model == "claude-test-1"
    (choice,) = result.choices
    assert (choice.text, choice.index, choice.finish_reason, choice.logprobs) == (fake.text, 0, "stop", None)
    assert result.usage.completion_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    (seen,) = fake.requests
    assert (seen.vendor, seen.path, seen.api_key) == ("anthropic", "/v1/messages", CLAUDE)
    body = seen.json()
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["max_tokens"] == 16  # the Completions API's default
    assert "stream" not in body


def test_completion_stream_served_by_a_claude_key(oai, fake):
    chunks = list(
        oai.completions.create(
            model="claude-test-1", prompt=["hi"], max_tokens=50, stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.object for c in chunks} == {"text_completion"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    assert "".join(c.choices[0].text for c in chunks if c.choices) == fake.expected_stream_text()
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    (seen,) = fake.requests
    body = seen.json()
    assert (seen.vendor, body["stream"], body["max_tokens"]) == ("anthropic", True, 50)


def test_completion_stream_without_usage(oai, fake):
    chunks = list(oai.completions.create(model="claude-test-1", prompt="hi", stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == fake.expected_stream_text()


@pytest.mark.parametrize(
    "extra",
    [{"prompt": "hi", "n": 2}, {"prompt": ["one", "two"]}, {"prompt": "hi", "echo": True}],
)
def test_what_cannot_be_honoured_is_a_400(oai, fake, extra):
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="claude-test-1", **extra)
    assert fake.requests == []


def test_upstream_error_reaches_the_client_in_openais_shape(oai, fake):
    fake.fail(CLAUDE, 400, body=b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}')
    with pytest.raises(openai.BadRequestError) as raised:
        oai.completions.create(model="claude-test-1", prompt="hi")
    assert "prompt is too long" in raised.value.message
    assert raised.value.body["type"] == "invalid_request_error"
