"""Rotation, priority, model targeting and failover, as a client of the listener sees them."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

KEY_A = "sk-ant-pool-test-key-AAAA"
KEY_B = "sk-ant-pool-test-key-BBBB"
KEY_HI = "sk-ant-pool-test-key-HIGH"
GEM_A = "AIza-pool-test-gemini-AAAA"
GEM_B = "AIza-pool-test-gemini-BBBB"
WORK = "AIza-pool-test-gemini-WORK"
COMPAT = "sk-pool-test-compat-0001"


def ask_claude(proxy, model: str = "claude-test-1") -> anthropic.types.Message:
    client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    return client.messages.create(
        model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )


def two_claude_keys(fake: FakeUpstream, **extra) -> dict:
    return {
        "claude-api-key": [{"api-key": KEY_A}, {"api-key": KEY_B}],
        "upstream-overrides": vendor_overrides(fake),
        **extra,
    }


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def test_round_robin_spreads_requests_evenly(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake))
    for _ in range(4):
        ask_claude(proxy)
    assert sorted(fake.keys_used()) == [KEY_A, KEY_A, KEY_B, KEY_B]


def test_fill_first_uses_one_key_until_it_fails(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    for _ in range(4):
        ask_claude(proxy)
    assert fake.keys_used() == [KEY_A] * 4


def test_higher_priority_key_is_used_while_available(fake, make_proxy):
    config = two_claude_keys(fake)
    config["claude-api-key"].append({"api-key": KEY_HI, "priority": 10})
    proxy = make_proxy(config)
    for _ in range(3):
        ask_claude(proxy)
    assert fake.keys_used() == [KEY_HI] * 3
    fake.fail(KEY_HI, 429, headers={"Retry-After": "60"})
    ask_claude(proxy)
    ask_claude(proxy)
    # The failed request is answered by a lower tier; afterwards the cooled key is skipped.
    assert fake.keys_used()[3:] == [KEY_HI, KEY_A, KEY_B]


@pytest.fixture(scope="module")
def routed(fake: FakeUpstream, make_module_proxy):
    """Gemini keys with a prefix, an alias and an exclusion, and a compat service."""
    return make_module_proxy(
        {
            "gemini-api-key": [
                {"api-key": GEM_A, "excluded-models": ["*-pro"]},
                {"api-key": WORK, "prefix": "work"},
                {"api-key": GEM_B, "models": [{"name": "gemini-2.5-flash", "alias": "fast"}]},
            ],
            "openai-compatibility": [
                {
                    "name": "compat",
                    "base-url": fake.base_url + "/v1",
                    "api-key-entries": [{"api-key": COMPAT}],
                    "models": [{"name": "upstream-model", "alias": "local-model"}],
                }
            ],
            "upstream-overrides": vendor_overrides(fake),
            "routing": {"strategy": "fill-first"},
        }
    )


def gemini_client(proxy) -> genai.Client:
    return genai.Client(
        api_key="unused",
        http_options=genai_types.HttpOptions(
            base_url=proxy.base_url,
            api_version="v1beta",
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        ),
    )


def test_prefix_targets_only_the_prefixed_key(routed, fake):
    client = gemini_client(routed)  # kept: google-genai closes its transport when collected
    client.models.generate_content(model="work/gemini-2.5-flash", contents="hi")
    (seen,) = fake.requests
    assert seen.api_key == WORK
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_alias_reaches_the_key_that_defines_it(routed, fake):
    client = gemini_client(routed)
    client.models.generate_content(model="fast", contents="hi")
    (seen,) = fake.requests
    assert seen.api_key == GEM_B
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_excluded_model_skips_the_key(routed, fake):
    client = gemini_client(routed)
    client.models.generate_content(model="gemini-2.5-pro", contents="hi")
    # fill-first would pick GEM_A, but it excludes *-pro; GEM_B only offers its alias list.
    assert fake.keys_used() == [WORK]


def test_unknown_model_is_refused_in_the_clients_shape(routed, fake):
    client = openai.OpenAI(api_key="unused", base_url=routed.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in raised.value.message
    gemini = gemini_client(routed)
    with pytest.raises(genai_errors.ClientError) as graised:
        gemini.models.generate_content(model="unknown-model-x", contents="hi")
    assert graised.value.code == 404 and "unknown-model-x" in str(graised.value)
    assert fake.requests == []


def test_429_fails_over_and_cools_only_that_model(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    fake.fail(KEY_A, 429, headers={"Retry-After": "30"}, times=1)
    message = ask_claude(proxy, "claude-test-1")
    assert message.content[0].text == fake.text  # the client never saw the 429
    assert fake.keys_used() == [KEY_A, KEY_B]
    ask_claude(proxy, "claude-test-1")
    assert fake.keys_used()[2] == KEY_B  # A rests for this model
    ask_claude(proxy, "claude-test-2")
    assert fake.keys_used()[3] == KEY_A  # but still serves other models


def test_streaming_request_fails_over_too(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    fake.fail(KEY_A, 503, times=1)
    client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    with client.messages.stream(
        model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == fake.expected_stream_text()
    assert fake.keys_used() == [KEY_A, KEY_B]


def test_all_keys_cooling_answers_429_with_retry_after(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, **{"max-retry-interval": 0}))
    fake.fail(KEY_A, 429, headers={"Retry-After": "120"})
    fake.fail(KEY_B, 429, headers={"Retry-After": "60"})
    with pytest.raises(anthropic.RateLimitError) as raised:
        ask_claude(proxy)
    retry_after = int(raised.value.response.headers["retry-after"])
    assert 55 <= retry_after <= 60
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    # Both are now known to be cooling: the next request is refused without going upstream.
    seen = len(fake.requests)
    with pytest.raises(anthropic.RateLimitError):
        ask_claude(proxy)
    assert len(fake.requests) == seen


def test_request_faults_go_back_without_rotating(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    fake.fail(KEY_A, 400, times=1)
    with pytest.raises(anthropic.BadRequestError):
        ask_claude(proxy)
    assert fake.keys_used() == [KEY_A]


def test_revoked_key_is_set_aside(fake, make_proxy):
    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    fake.fail(KEY_A, 401)
    for _ in range(3):
        ask_claude(proxy)
    assert fake.keys_used() == [KEY_A, KEY_B, KEY_B, KEY_B]


def test_a_client_hanging_up_does_not_rest_the_key(fake, make_proxy):
    """A user pressing Stop mid-stream is no fault of the credential."""
    import httpx

    proxy = make_proxy(two_claude_keys(fake, routing={"strategy": "fill-first"}))
    body = {"model": "claude-test-1", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-fake-events": "50", "x-fake-event-delay": "0.05"}
    with httpx.stream("POST", proxy.base_url + "/v1/messages", json=body, headers=headers) as r:
        next(r.iter_bytes())  # the first event, then hang up
    time.sleep(0.5)
    ask_claude(proxy)
    assert fake.keys_used() == [KEY_A, KEY_A]


def test_credentials_reach_their_upstream_through_their_proxy(fake, make_proxy):
    """`proxy-url` per credential, the global one, and `direct` to bypass it."""
    from tests.fakes.forward_proxy import ConnectProxy

    with ConnectProxy() as corporate, ConnectProxy() as own:
        config = two_claude_keys(fake, routing={"strategy": "fill-first"})
        config["proxy-url"] = corporate.url
        config["claude-api-key"][0]["proxy-url"] = own.url
        config["claude-api-key"][1]["proxy-url"] = "direct"
        config["gemini-api-key"] = [{"api-key": "AIza-proxy-test-key"}]
        config["model-listing"] = {"enabled": False}  # its tunnels would be counted (see test_e2e_listings)
        proxy = make_proxy(config)
        ask_claude(proxy)
        upstream = fake.base_url.removeprefix("http://")
        assert own.tunnels == [upstream] and corporate.tunnels == []
        client = genai.Client(
            api_key="unused",
            http_options=genai_types.HttpOptions(base_url=proxy.base_url, api_version="v1beta"),
        )
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert corporate.tunnels == [upstream]  # the global proxy, for a key without its own
        fake.fail(KEY_A, 429, headers={"Retry-After": "30"}, times=1)
        ask_claude(proxy)  # A through its proxy, then B: direct
        assert fake.keys_used()[-2:] == [KEY_A, KEY_B]
        assert len(own.tunnels) == 2 and len(corporate.tunnels) == 1


def test_a_retry_goes_through_the_retried_credentials_proxy(fake, make_proxy):
    from tests.fakes.forward_proxy import ConnectProxy

    with ConnectProxy() as own:
        config = two_claude_keys(fake, routing={"strategy": "fill-first"})
        config["claude-api-key"][1]["proxy-url"] = own.url
        config["model-listing"] = {"enabled": False}  # its tunnels would be counted
        proxy = make_proxy(config)
        fake.fail(KEY_A, 503, times=1)
        assert ask_claude(proxy).content[0].text == fake.text
        assert fake.keys_used() == [KEY_A, KEY_B]
        assert own.tunnels == [fake.base_url.removeprefix("http://")]  # B's retry, sent by httpx
