"""Failover the client never sees, through a real mitmdump: upstreams that refuse, reset, close,
black-hole or never answer beside a healthy one; failed-over streams that still stream; streams
cut short that say so; and the answer when no credential is left."""

from __future__ import annotations

import functools
import gzip
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from mitmproxy import io as mitm_io

from tests.conftest import vendor_overrides
from tests.fakes.faults import BlackHole, refusing_url
from tests.fakes.upstream import FakeUpstream

CLIENT_KEY = "failover-test-client-key"
CONNECT_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.5
# Room for a loaded two-core machine on top of the timeouts a request may have to sit out.
SLACK = 3.0

CLAUDE, GEMINI, CODEX, COMPAT = "claude-test-1", "gemini-2.5-flash", "gpt-5", "compat-model"
# Faults the fake scripts per key, beside the ones that need an address of their own.
SCRIPTED = ("reset", "close", "hang", "die0", "empty", "500", "429")


def key(provider: str, what: str) -> str:
    return f"failover-{provider}-{what}-key"


def script_faults(fake: FakeUpstream, provider: str) -> None:
    fake.fault(key(provider, "reset"), "reset")
    fake.fault(key(provider, "close"), "close")
    fake.fault(key(provider, "hang"), "hang")
    fake.fault(key(provider, "die0"), "die", after=0)  # headers, then a reset before any byte
    fake.fault(key(provider, "empty"), "early_end", after=0)  # headers, then an empty body
    fake.fail(key(provider, "500"), 500)
    fake.fail(key(provider, "429"), 429, headers={"Retry-After": "30"})


def entries(provider: str, fake_url: str, refused: str, hole: str, suffix: str = "") -> list[dict]:
    """One healthy credential of `provider` among eight broken ones."""
    out = [{"api-key": key(provider, "ok"), "base-url": fake_url + suffix}]
    out += [{"api-key": key(provider, what), "base-url": fake_url + suffix} for what in SCRIPTED]
    out.append({"api-key": key(provider, "refused"), "base-url": refused + suffix})
    out.append({"api-key": key(provider, "hole"), "base-url": hole + suffix})
    return out


def base_config(fake: FakeUpstream, **extra) -> dict:
    return {
        "api-keys": [CLIENT_KEY],
        "connect-timeout": CONNECT_TIMEOUT,
        "response-header-timeout": HEADER_TIMEOUT,
        "upstream-overrides": vendor_overrides(fake),
        **extra,
    }


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    with BlackHole() as b:
        yield b


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


# -- clients (one per proxy and SDK, shared by the threads as SDK clients may be) -----------


@functools.cache
def _chat(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=base_url + "/v1", max_retries=0, timeout=60)


@functools.cache
def _claude(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=base_url, max_retries=0, timeout=60)


@functools.cache
def _gemini(base_url: str) -> genai.Client:
    return genai.Client(
        api_key=CLIENT_KEY,
        http_options=genai_types.HttpOptions(base_url=base_url, timeout=60_000),
    )


def chat(proxy) -> openai.OpenAI:
    return _chat(proxy.base_url)


def claude(proxy) -> anthropic.Anthropic:
    return _claude(proxy.base_url)


def gemini(proxy) -> genai.Client:
    return _gemini(proxy.base_url)


def ask_chat(proxy, model: str, stream: bool, headers: dict | None = None) -> str:
    client = chat(proxy)
    messages = [{"role": "user", "content": "hi"}]
    if not stream:
        r = client.chat.completions.create(model=model, messages=messages, extra_headers=headers)
        return r.choices[0].message.content or ""
    text = ""
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True, extra_headers=headers):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text


def ask_claude(proxy, model: str, stream: bool, headers: dict | None = None) -> str:
    client = claude(proxy)
    kwargs = dict(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}], extra_headers=headers)
    if not stream:
        return client.messages.create(**kwargs).content[0].text
    with client.messages.stream(**kwargs) as s:
        return s.get_final_message().content[0].text


def ask_responses(proxy, model: str, stream: bool, headers: dict | None = None) -> str:
    client = chat(proxy)
    if not stream:
        return client.responses.create(model=model, input="hi", extra_headers=headers).output_text
    with client.responses.stream(model=model, input="hi", extra_headers=headers) as s:
        return s.get_final_response().output_text


def ask_gemini(proxy, model: str, stream: bool, headers: dict | None = None) -> str:
    client = gemini(proxy)
    config = genai_types.GenerateContentConfig(http_options=genai_types.HttpOptions(headers=headers or {}))
    if not stream:
        return client.models.generate_content(model=model, contents="hi", config=config).text or ""
    return "".join(c.text or "" for c in client.models.generate_content_stream(model=model, contents="hi", config=config))


ASK: dict[str, Callable[..., str]] = {
    "chat": ask_chat,
    "anthropic": ask_claude,
    "responses": ask_responses,
    "gemini": ask_gemini,
}


# -- a storm beside one healthy credential --------------------------------------------------


def test_a_storm_never_shows_the_broken_credentials(fake, make_proxy, hole, tmp_path):
    """200 requests, 16 at a time, half of them streams, from four client APIs, each model
    served by one healthy credential among eight broken ones: none fails, none waits longer
    than the timeouts it may have to sit out."""
    flows_path = tmp_path / "storm.flows"
    refused = refusing_url()
    for provider in ("claude", "gemini", "codex", "compat"):
        script_faults(fake, provider)
    proxy = make_proxy(
        base_config(
            fake,
            **{
                "claude-api-key": entries("claude", fake.base_url, refused, hole.url),
                "gemini-api-key": entries("gemini", fake.base_url, refused, hole.url),
                "codex-api-key": entries("codex", fake.base_url, refused, hole.url, "/v1"),
                "openai-compatibility": [
                    {
                        "name": "compat",
                        "base-url": fake.base_url + "/v1",
                        "api-key-entries": [{"api-key": e["api-key"]} for e in entries("compat", "", "", "")],
                        "models": [{"name": COMPAT}],
                    }
                ],
            },
        ),
        extra_args=("-w", str(flows_path)),
    )
    # The compat service has one base URL: its refusing and black-holed keys reach the fake,
    # which knows them as no fault, so they only dilute; the other three providers have all.
    calls = [
        (api, model, i % 2 == 1)
        for i in range(200)
        for api, model in [
            (("chat", COMPAT), ("anthropic", CLAUDE), ("responses", CODEX), ("gemini", GEMINI))[i % 4]
        ]
    ]
    expected = fake.expected_stream_text()

    def run(call: tuple[str, str, bool]) -> tuple[float, str | None]:
        api, model, stream = call
        started = time.monotonic()
        try:
            text = ASK[api](proxy, model, stream)
        except Exception as e:  # noqa: BLE001 - any failure is what the test counts
            return time.monotonic() - started, f"{api} {model} stream={stream}: {type(e).__name__}: {e}"
        problem = None if text in (expected, fake.text) else f"{api} {model} stream={stream}: got {text!r}"
        return time.monotonic() - started, problem

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, calls))
    failures = [problem for _, problem in results if problem]
    assert failures == [], f"{len(failures)} of 200 failed, e.g. {failures[:5]}"
    # Seen from the clients, which share this process (and its GIL) with the fake upstream:
    # nothing waits for a client timeout.
    slowest = max(elapsed for elapsed, _ in results)
    assert slowest < 20, f"slowest request took {slowest:.2f}s"
    # Seen by the proxy: a request sits out at most one connect timeout and one response
    # timeout (a black-holed and a silent credential tried before their first failure is known).
    proxy.stop()
    with flows_path.open("rb") as f:
        served = [fl for fl in mitm_io.FlowReader(f).stream() if fl.type == "http" and fl.response]
    assert len(served) == 200
    took = {fl.comment: fl.response.timestamp_end - fl.request.timestamp_start for fl in served}
    comment, longest = max(took.items(), key=lambda item: item[1])
    assert longest < CONNECT_TIMEOUT + HEADER_TIMEOUT + SLACK, f"{longest:.2f}s: {comment}"
    log = proxy.output()
    for why in ("connection refused", "connect timeout", "no answer in time", "connection reset"):
        assert why in log, f"no credential was rested for {why!r}"


# -- failed-over streams stream -------------------------------------------------------------

PACED = {"x-fake-events": "20", "x-fake-event-delay": "0.05"}


@pytest.mark.parametrize("first", ["429", "refused"])
@pytest.mark.parametrize("api", ["anthropic", "chat-translated"])
def test_a_failed_over_stream_arrives_incrementally(fake, make_proxy, first, api):
    """The first credential fails (429, or refuses the connection); the second streams 20
    events 50 ms apart. The client holds the first event long before the last is sent."""
    bad = {"api-key": key("claude", "first"), "priority": 10}
    if first == "refused":
        bad["base-url"] = refusing_url()
    else:
        fake.fail(key("claude", "first"), 429, headers={"Retry-After": "30"})
    proxy = make_proxy(base_config(fake, **{"claude-api-key": [bad, {"api-key": key("claude", "ok")}]}))
    first_event_at = None
    if api == "anthropic":
        with claude(proxy).messages.stream(
            model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "hi"}], extra_headers=PACED
        ) as s:
            for text in s.text_stream:
                first_event_at = first_event_at or time.monotonic()
            text = s.get_final_message().content[0].text
    else:
        text = ""
        for chunk in chat(proxy).chat.completions.create(
            model=CLAUDE, messages=[{"role": "user", "content": "hi"}], stream=True, extra_headers=PACED
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                first_event_at = first_event_at or time.monotonic()
                text += chunk.choices[0].delta.content
    assert text == fake.expected_stream_text(20)
    assert fake.keys_used()[-1] == key("claude", "ok")
    assert first_event_at is not None and fake.last_event_sent_at is not None
    # 19 more events, 50 ms apart, were still to come when the first one arrived.
    assert fake.last_event_sent_at - first_event_at > 0.6


# -- cut streams say so ---------------------------------------------------------------------

# (client API, model): the model's credential speaks the client's API (pass-through) or not.
CUT_CASES = {
    "chat/pass-through": ("chat", COMPAT),
    "chat/translated": ("chat", CLAUDE),
    "anthropic/pass-through": ("anthropic", CLAUDE),
    "anthropic/translated": ("anthropic", GEMINI),
    "responses/pass-through": ("responses", CODEX),
    "responses/translated": ("responses", CLAUDE),
    "gemini/pass-through": ("gemini", GEMINI),
    "gemini/translated": ("gemini", CLAUDE),
}


@pytest.fixture(scope="module")
def one_each(fake: FakeUpstream, make_module_proxy):
    """One credential per provider, all on the fake."""
    return make_module_proxy(
        base_config(
            fake,
            **{
                "claude-api-key": [{"api-key": key("claude", "cut")}],
                "gemini-api-key": [{"api-key": key("gemini", "cut")}],
                "codex-api-key": [{"api-key": key("codex", "cut")}],
                "openai-compatibility": [
                    {
                        "name": "compat",
                        "base-url": fake.base_url + "/v1",
                        "api-key-entries": [{"api-key": key("compat", "cut")}],
                        "models": [{"name": COMPAT}],
                    }
                ],
                # A cut stream rests its credential briefly; the next case must not wait for it.
                "disable-cooling": True,
            },
        )
    )


def provider_of(model: str) -> str:
    return {CLAUDE: "claude", GEMINI: "gemini", CODEX: "codex", COMPAT: "compat"}[model]


@pytest.mark.parametrize("fault", ["die", "early_end"])
@pytest.mark.parametrize("case", list(CUT_CASES))
def test_a_stream_cut_short_is_reported_to_the_client(fake, one_each, case, fault):
    """The upstream sends three frames, then dies (reset) or ends its body cleanly without its
    terminal event: the SDK raises or reports an error, never a complete-looking answer."""
    api, model = CUT_CASES[case]
    fake.fault(key(provider_of(model), "cut"), fault, after=3, times=1)
    if api == "responses":
        with chat(one_each).responses.stream(model=model, input="hi") as s:
            events = [e.type for e in s]
        assert "response.completed" not in events
        assert events[-1] == "response.failed", events
        with pytest.raises(RuntimeError):
            s.get_final_response()  # the SDK's own accumulator: no completed response
    else:
        with pytest.raises((openai.APIError, anthropic.APIError, genai_errors.APIError)) as raised:
            ASK[api](one_each, model, True)
        assert "cut off" in str(raised.value) or "ended early" in str(raised.value)
    # The proxy serves the next request as usual.
    assert ASK[api](one_each, model, True) == fake.expected_stream_text()


# -- retry hints, and nothing left ----------------------------------------------------------


def test_a_gzip_compressed_retry_hint_is_honoured(fake, make_proxy):
    """A 429 whose body (with Google's RetryInfo) comes gzip-compressed still sets the rest."""
    body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"}],
        }
    }
    fake.fail(
        key("gemini", "a"),
        429,
        headers={"Content-Encoding": "gzip"},
        body=gzip.compress(json.dumps(body).encode()),
        times=1,
    )
    proxy = make_proxy(
        base_config(
            fake,
            routing={"strategy": "fill-first"},
            **{"gemini-api-key": [{"api-key": key("gemini", "a")}, {"api-key": key("gemini", "b")}]},
        )
    )
    assert ask_gemini(proxy, GEMINI, False) == fake.text
    proxy.wait_for_output("(HTTP 429); resting it 47s")
    assert fake.keys_used() == [key("gemini", "a"), key("gemini", "b")]


# Past the whole-answer cap (64 MiB) and the error-body cap (1 MiB).
TOO_LARGE_ANSWER = b"x" * (65 << 20)
TOO_LARGE_ERROR = b"x" * (2 << 20)


def two_claude_keys(fake: FakeUpstream, make_proxy):
    return make_proxy(
        base_config(
            fake,
            routing={"strategy": "fill-first"},
            **{"claude-api-key": [{"api-key": key("claude", "a")}, {"api-key": key("claude", "b")}]},
        )
    )


def test_a_whole_answer_too_large_to_hold_is_a_clear_502_and_spends_no_other_credential(fake, make_proxy):
    fake.fail(key("claude", "a"), 200, body=TOO_LARGE_ANSWER, times=1)
    proxy = two_claude_keys(fake, make_proxy)
    with pytest.raises(anthropic.APIStatusError) as raised:
        ask_claude(proxy, CLAUDE, False)
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["type"] == "api_error"
    assert "larger than the 64 MiB" in raised.value.body["error"]["message"]
    assert "stream" in raised.value.body["error"]["message"]  # what to do instead
    # The request was not retried elsewhere, and the credential is not rested for it.
    assert fake.keys_used() == [key("claude", "a")]
    assert ask_claude(proxy, CLAUDE, False) == fake.text
    assert fake.keys_used() == [key("claude", "a")] * 2


def test_an_error_body_too_large_to_hold_still_fails_over_and_is_never_relayed(fake, make_proxy):
    fake.fail(key("claude", "a"), 500, body=TOO_LARGE_ERROR, times=1)
    proxy = two_claude_keys(fake, make_proxy)
    assert ask_claude(proxy, CLAUDE, False) == fake.text
    assert fake.keys_used() == [key("claude", "a"), key("claude", "b")]

    fake.clear()
    for which in ("a", "b"):
        fake.fail(key("claude", which), 503, headers={"Retry-After": "1"}, body=TOO_LARGE_ERROR)
    with pytest.raises(openai.APIStatusError) as raised:
        ask_chat(proxy, CLAUDE, False)
    assert raised.value.status_code == 503
    assert len(raised.value.response.content) < 4096
    assert "claude-api-key[0]" in raised.value.message and "503" in raised.value.message


def test_all_unreachable_is_a_502_naming_the_causes(fake, make_proxy, hole):
    proxy = make_proxy(
        base_config(
            fake,
            **{"claude-api-key": [{"api-key": key("claude", "refused"), "base-url": refusing_url()},
                                  {"api-key": key("claude", "hole"), "base-url": hole.url}]},
        )
    )
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        ask_claude(proxy, CLAUDE, False)
    assert time.monotonic() - started < CONNECT_TIMEOUT + SLACK
    error = raised.value
    assert error.status_code == 502
    assert error.body["error"]["type"] == "api_error"
    message = error.body["error"]["message"]
    assert "connection refused" in message and "connect timeout" in message
    assert "retry-after" not in error.response.headers
    # Both now rest: the next request is told so at once, not that it is rate-limited.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        ask_chat(proxy, CLAUDE, True)
    assert time.monotonic() - started < 1.0
    assert raised.value.status_code == 503
    assert "unreachable" in raised.value.message and "rate" not in raised.value.message


def test_all_rate_limited_is_a_429_with_retry_after(fake, make_proxy):
    for which in ("a", "b"):
        fake.fail(key("claude", which), 429, headers={"Retry-After": str(20 if which == "a" else 40)})
    proxy = make_proxy(
        base_config(
            fake,
            **{"claude-api-key": [{"api-key": key("claude", "a")}, {"api-key": key("claude", "b")}],
               "max-retry-interval": 5},
        )
    )
    with pytest.raises(openai.RateLimitError) as raised:
        ask_chat(proxy, CLAUDE, False)
    assert raised.value.status_code == 429
    assert 18 <= int(raised.value.response.headers["retry-after"]) <= 20
    assert "rate-limited" in raised.value.message
    assert len(fake.requests) == 2


def test_the_relay_serves_nothing_but_the_flows_sent_to_it(fake, make_proxy):
    """The relay's loopback port answers only for a flow the dispatcher sent there, once."""
    proxy = make_proxy(base_config(fake, debug=True, **{"claude-api-key": [{"api-key": key("claude", "ok")}]}))
    ask_claude(proxy, CLAUDE, False)
    port = int(proxy.output().split("relay on 127.0.0.1:")[1].split()[0])
    r = httpx.post(f"http://127.0.0.1:{port}/v1/messages", headers={"x-cliproxy-flow": "guessed"})
    assert r.status_code == 404
    assert len(fake.requests) == 1
