"""Model listings asked of the upstreams, through a real mitmdump: `/v1/models` in each shape is
what the upstreams listed (the official SDKs' list calls), refreshed as listings change, with
the built-in list (and one log line) while a listing fails."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from tests.conftest import free_port, vendor_overrides
from tests.fakes.upstream import FakeUpstream
from tests.waiting import wait_until

CLAUDE_KEY = "sk-ant-listing-claude-0001"
GEMINI_KEY = "AIza-listing-gemini-0002"
CODEX_KEY = "sk-listing-codex-0003"
COMPAT_KEY = "sk-listing-compat-0004"

CLAUDE_MODELS = ["claude-opus-4-7", "claude-sonnet-4-6", "sonnet-next", "shared-1"]
GEMINI_MODELS = ["gemini-3.1-pro-preview", "gemini-embedding-001", "gemini-3-flash-preview"]
CODEX_MODELS = ["gpt-5.2", "shared-1"]
COMPAT_MODELS = ["org/model-a"]
# The embedder is listed, but it does not generate content: not served.
UNION = {*CLAUDE_MODELS, "gemini-3.1-pro-preview", "gemini-3-flash-preview", *CODEX_MODELS, *COMPAT_MODELS}


def listed(proxy, **headers) -> set[str]:
    return {m["id"] for m in proxy.get("/v1/models", headers=headers).json()["data"]}


@pytest.fixture(scope="module")
def union_proxy(fake: FakeUpstream, make_module_proxy):
    fake.clear()
    fake.set_listing(CLAUDE_KEY, CLAUDE_MODELS, page_size=2)
    fake.set_listing(GEMINI_KEY, GEMINI_MODELS, page_size=2)
    fake.set_listing(CODEX_KEY, CODEX_MODELS)
    fake.set_listing(COMPAT_KEY, COMPAT_MODELS)
    proxy = make_module_proxy(
        {
            "claude-api-key": [{"api-key": CLAUDE_KEY}],
            "gemini-api-key": [{"api-key": GEMINI_KEY}],
            "codex-api-key": [{"api-key": CODEX_KEY}],
            "openai-compatibility": [
                {"name": "svc", "base-url": fake.base_url + "/v1", "api-key-entries": [{"api-key": COMPAT_KEY}]}
            ],
            # The vendors' own hosts lead to the fake: listings go where model calls go.
            "upstream-overrides": vendor_overrides(fake),
        }
    )
    wait_until(lambda: listed(proxy) == UNION, 20, "every listing served")
    return proxy


def test_openai_sdk_lists_the_union_with_providers(union_proxy):
    client = openai.OpenAI(api_key="any", base_url=union_proxy.base_url + "/v1", max_retries=0)
    models = {m.id: m for m in client.models.list()}
    assert set(models) == UNION
    # Config order: Gemini keys, Claude keys, Codex keys, then OpenAI-compatible services.
    assert models["shared-1"].owned_by == "claude"
    assert models["shared-1"].model_extra["providers"] == ["claude", "codex"]
    assert models["org/model-a"].model_extra["providers"] == ["svc"]


def test_anthropic_sdk_lists_the_union(union_proxy):
    client = anthropic.Anthropic(api_key="any", base_url=union_proxy.base_url, max_retries=0)
    models = list(client.models.list())
    assert {m.id for m in models} == UNION
    assert all(m.type == "model" and m.lifecycle == "active" for m in models)


def test_genai_sdk_lists_the_union(union_proxy):
    client = genai.Client(
        api_key="any",
        http_options=genai_types.HttpOptions(
            base_url=union_proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    models = {m.name: m for m in client.models.list()}
    assert set(models) == {f"models/{m}" for m in UNION}
    assert models["models/shared-1"].description == "shared-1, served by cliproxy (claude, codex)"
    assert models["models/shared-1"].supported_actions[0] == "generateContent"


def test_the_paged_listings_were_read_to_the_end(union_proxy, fake: FakeUpstream):
    claude = [r for r in fake.listing_requests if r.api_key == CLAUDE_KEY]
    gemini = [r for r in fake.listing_requests if r.api_key == GEMINI_KEY]
    assert {r.path for r in claude} == {"/v1/models"} and {r.path for r in gemini} == {"/v1beta/models"}
    assert [r.query.get("after_id") for r in claude[:2]] == [None, "claude-sonnet-4-6"]
    assert [r.query.get("pageToken") for r in gemini[:2]] == [None, "2"]
    assert all(r.headers["anthropic-version"] == "2023-06-01" for r in claude)
    assert not fake.requests  # a listing is not a model call


# -- a proxy whose listings change, fail and recover ---------------------------------------------

LIVE_CLAUDE = "sk-ant-listing-live-0005"
LIVE_GEMINI = "AIza-listing-live-0006"
LIVE_CODEX = "sk-listing-live-codex-0007"
ADDED_CLAUDE = "sk-ant-listing-added-0008"


def live_config(fake: FakeUpstream, refused_url: str, *, gemini: bool = True, added: bool = False) -> dict:
    return {
        "claude-api-key": [{"api-key": LIVE_CLAUDE}, *([{"api-key": ADDED_CLAUDE}] if added else [])],
        "gemini-api-key": [{"api-key": LIVE_GEMINI}] if gemini else [],
        # Nothing listens there: its listing is refused.
        "codex-api-key": [{"api-key": LIVE_CODEX, "base-url": refused_url}],
        "upstream-overrides": vendor_overrides(fake),
        "model-listing": {"interval-seconds": 0.5, "timeout-seconds": 1},
    }


@pytest.fixture(scope="module")
def live(fake: FakeUpstream, make_module_proxy, union_proxy):
    fake.clear()
    fake.set_listing(LIVE_CLAUDE, ["sonnet-next"])
    fake.set_listing(LIVE_GEMINI, status=500)
    fake.set_listing(ADDED_CLAUDE, ["added-live-model"])
    refused_url = f"http://127.0.0.1:{free_port()}/v1"
    proxy = make_module_proxy(live_config(fake, refused_url))
    proxy.refused_url = refused_url
    wait_until(lambda: "sonnet-next" in listed(proxy), 20, "the claude listing served")
    return proxy


def ask(proxy, model: str) -> httpx.Response:
    return proxy.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    )


def test_a_listed_model_is_routed_to_the_credential_that_listed_it(live, fake: FakeUpstream):
    # `sonnet-next` is of no built-in family: only the listing says the Claude key serves it.
    r = ask(live, "sonnet-next")
    assert r.status_code == 200, r.text
    assert fake.requests[-1].api_key == LIVE_CLAUDE and fake.requests[-1].path == "/v1/messages"
    assert ask(live, "not-listed-anywhere").status_code == 404


def test_failing_listings_fall_back_to_the_built_in_list_with_one_log_line(live, fake: FakeUpstream):
    ids = listed(live)
    assert {"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"} <= ids  # Gemini answered 500
    assert {"gpt-5", "gpt-5-codex", "gpt-5-mini"} <= ids  # the Codex key's listing was refused
    live.wait_for_output("model listing of gemini-api-key[0] (…0006) failed (HTTP 500); its built-in model list stands in")
    live.wait_for_output("model listing of codex-api-key[0] (…0007) failed (cannot connect)")
    # Tried again every half second, said once.
    wait_until(lambda: len([r for r in fake.listing_requests if r.api_key == LIVE_GEMINI]) >= 3, 15, "retries")
    assert live.output().count("model listing of gemini-api-key[0]") == 1
    for secret in (LIVE_CLAUDE, LIVE_GEMINI, LIVE_CODEX):
        assert secret not in live.output()


def test_a_listing_that_recovers_replaces_the_built_in_list(live, fake: FakeUpstream):
    fake.set_listing(LIVE_GEMINI, ["gemini-3-flash-preview"])
    wait_until(lambda: "gemini-3-flash-preview" in listed(live), 15, "the recovered listing served")
    assert "gemini-2.5-flash-lite" not in listed(live)
    live.wait_for_output("model listing of gemini-api-key[0] (…0006) works again: 1 models")


def test_a_changed_listing_is_served_at_the_next_refresh(live, fake: FakeUpstream):
    fake.set_listing(LIVE_CLAUDE, ["sonnet-next-2"])
    wait_until(lambda: "sonnet-next-2" in listed(live), 15, "the changed listing served")
    assert "sonnet-next" not in listed(live)


def test_a_hanging_listing_times_out_without_holding_requests_up(live, fake: FakeUpstream):
    mark = len(live.output())
    fake.set_listing(LIVE_CLAUDE, hang=True)
    wait_until(lambda: fake.listing_requests and fake.listing_requests[-1].api_key == LIVE_CLAUDE, 15, "a hanging listing")
    started = time.monotonic()
    r = ask(live, "sonnet-next-2")
    assert r.status_code == 200 and time.monotonic() - started < 0.9
    live.wait_for_output(
        "model listing of claude-api-key[0] (…0005) failed (no complete answer within 1s); "
        "the models it listed before stay", timeout=5, start=mark,
    )
    assert "sonnet-next-2" in listed(live)
    fake.set_listing(LIVE_CLAUDE, ["sonnet-next-2"])
    live.wait_for_output("model listing of claude-api-key[0] (…0005) works again", timeout=5, start=mark)


def test_a_resting_credential_is_not_asked(live, fake: FakeUpstream):
    fake.fail(LIVE_CLAUDE, 401, times=1)  # refused: the key rests (30 min)
    assert ask(live, "sonnet-next-2").status_code == 401
    time.sleep(0.6)  # a listing under way when the key was refused may still land
    before = len([r for r in fake.listing_requests if r.api_key == LIVE_CLAUDE])
    time.sleep(2)  # four intervals
    assert len([r for r in fake.listing_requests if r.api_key == LIVE_CLAUDE]) == before
    assert len([r for r in fake.listing_requests if r.api_key == LIVE_GEMINI]) > 0


def test_credentials_added_and_removed_live(live, fake: FakeUpstream):
    live.write_config(live_config(fake, live.refused_url, gemini=False, added=True))
    wait_until(lambda: "added-live-model" in listed(live), 20, "the added key listed")
    assert "gemini-3-flash-preview" not in listed(live)  # the removed key's models are gone
    r = ask(live, "added-live-model")
    assert r.status_code == 200 and fake.requests[-1].api_key == ADDED_CLAUDE


def test_a_listing_goes_through_the_credentials_upstream_proxy(fake: FakeUpstream, make_proxy):
    from tests.fakes.forward_proxy import ConnectProxy

    with ConnectProxy() as own:
        fake.set_listing("sk-ant-listing-proxied-0009", ["proxied-model"])
        proxy = make_proxy(
            {
                "claude-api-key": [{"api-key": "sk-ant-listing-proxied-0009", "proxy-url": own.url}],
                "upstream-overrides": vendor_overrides(fake),
            }
        )
        wait_until(lambda: "proxied-model" in listed(proxy), 20, "the proxied listing served")
        assert own.tunnels and set(own.tunnels) == {fake.base_url.removeprefix("http://")}
