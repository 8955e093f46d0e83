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
