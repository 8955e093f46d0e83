"""auth/providers (listing.py and the providers' listers), routing/listings.py: the vendors' model listings decoded, the listing requests built, and the
router serving what was listed (routing/router.py, routing/runtime.py)."""

from __future__ import annotations

import json
import textwrap

import pytest

from auth.credential import Credential
from routing.config import parse_config
from auth.providers.antigravity import decode_antigravity
from auth.providers.codex import decode_codex
from auth.providers.listing import ListingError, decode_anthropic, decode_gemini, decode_openai
from routing.listings import lister, listing_request, usable_ids
from routing.router import Router, credentials_from_config
from routing.runtime import Runtime
from translators.listing import ListedModel, anthropic_models, gemini_models, openai_models


def dumps(obj) -> bytes:
    return json.dumps(obj).encode()


# -- decoders, with the shapes the vendors document (and their SDKs' type definitions) ------------


def test_anthropic_page_and_cursor():
    # anthropic.types.ModelInfo: id, type, display_name, created_at, lifecycle...; the page:
    # data, has_more, first_id, last_id (anthropic.pagination.SyncPage).
    body = {
        "data": [
            {"type": "model", "id": "claude-opus-4-7", "display_name": "Claude Opus 4.7",
             "created_at": "2026-04-01T00:00:00Z", "lifecycle": "active"},
            {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6",
             "created_at": "2026-02-17T00:00:00Z", "lifecycle": "deprecated"},
            {"type": "model", "id": "claude-2.1", "display_name": "Claude 2.1",
             "created_at": "2023-11-21T00:00:00Z", "lifecycle": "retired"},
        ],
        "has_more": True,
        "first_id": "claude-opus-4-7",
        "last_id": "claude-2.1",
    }
    page = decode_anthropic(dumps(body))
    assert page.ids == ["claude-opus-4-7", "claude-sonnet-4-6"]  # a retired model is not served
    assert page.next == {"after_id": "claude-2.1"}
    last = decode_anthropic(dumps({**body, "has_more": False}))
    assert last.next is None


def test_gemini_page_keeps_generators_and_strips_the_prefix():
    # google.genai.types.Model (supported_actions <- supportedGenerationMethods), and
    # ListModelsResponse.next_page_token <- nextPageToken.
    body = {
        "models": [
            {"name": "models/gemini-3.1-pro-preview", "baseModelId": "gemini-3.1-pro-preview", "version": "3.1",
             "displayName": "Gemini 3.1 Pro Preview", "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
             "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"]},
            {"name": "models/gemini-embedding-001", "version": "001",
             "supportedGenerationMethods": ["embedContent", "countTextTokens"]},
            {"name": "models/imagen-4.0-generate-001", "supportedGenerationMethods": ["predict"]},
            {"name": "models/gemini-2.5-flash"},  # no methods: not known to generate
        ],
        "nextPageToken": "Ch5tb2RlbHMvZ2VtaW5p",
    }
    page = decode_gemini(dumps(body))
    assert page.ids == ["gemini-3.1-pro-preview"]
    assert page.next == {"pageToken": "Ch5tb2RlbHMvZ2VtaW5p"}
    assert decode_gemini(dumps({"models": []})).next is None


def test_openai_list():
    # openai.types.Model: id, created, object, owned_by; the page: {object: list, data}.
    body = {"object": "list", "data": [
        {"id": "gpt-5.2", "object": "model", "created": 1765000000, "owned_by": "system"},
        {"id": "meta-llama/llama-3.3-70b", "object": "model", "created": 0, "owned_by": "together"},
    ]}
    page = decode_openai(dumps(body))
    assert page.ids == ["gpt-5.2", "meta-llama/llama-3.3-70b"] and page.next is None


def test_codex_backend_list():
    # codex-rs codex_protocol::openai_models::ModelsResponse {models: [ModelInfo {slug, ...}]}.
    body = {"models": [
        {"slug": "gpt-5.3-codex", "display_name": "gpt-5.3-codex", "visibility": "list", "supported_in_api": True,
         "priority": 1},
        {"slug": "codex-auto-review", "visibility": "hide"},
    ]}
    assert decode_codex(dumps(body)).ids == ["gpt-5.3-codex", "codex-auto-review"]


def test_antigravity_list():
    body = {"models": {"gemini-3-pro-high": {"displayName": "Gemini 3 Pro"}, "claude-sonnet-4-6": {},
                       "chat_20706": {}}}
    assert decode_antigravity(dumps(body)).ids == ["gemini-3-pro-high", "claude-sonnet-4-6"]


@pytest.mark.parametrize("decode", [decode_openai, decode_anthropic, decode_gemini, decode_codex, decode_antigravity])
@pytest.mark.parametrize("raw", [b"<html>busy</html>", b"[1, 2]", b'{"data": "x", "models": 3}'])
def test_unreadable_answers_are_listing_errors(decode, raw):
    with pytest.raises(ListingError):
        decode(raw)


def test_usable_ids_drop_names_no_client_could_send_and_duplicates():
    assert usable_ids(["a-1", "a-1", "../etc", "b c", "", "org/m-2"]) == ("a-1", "org/m-2")


# -- requests: where each kind of credential is asked -------------------------------------------

OVERRIDES = {"api.anthropic.com": "http://127.0.0.1:9001", "chatgpt.com": "http://127.0.0.1:9002/gw",
             "daily-cloudcode-pa.googleapis.com": "http://127.0.0.1:9003",
             "generativelanguage.googleapis.com": "http://127.0.0.1:9004"}


def request_for(cred: Credential, page=None):
    spec = lister(cred)
    assert spec is not None
    return listing_request(cred, spec, OVERRIDES, page)


def test_claude_key_request_follows_the_override_and_pages():
    cred = Credential("claude", "claude-api-key[0]", secret="sk-ant-x", headers={"X-Team": "core", "X-Copy": "$x-who"})
    r = request_for(cred, {"after_id": "claude-2"})
    assert (r.method, r.url) == ("GET", "http://127.0.0.1:9001/v1/models?limit=1000&after_id=claude-2")
    assert r.headers == {"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01", "X-Team": "core"}


def test_gemini_key_request():
    r = request_for(Credential("gemini", "gemini-api-key[0]", secret="AIza-x"), {"pageToken": "t"})
    assert r.url == "http://127.0.0.1:9004/v1beta/models?pageSize=1000&pageToken=t"
    assert r.headers == {"x-goog-api-key": "AIza-x"}


def test_openai_compatible_request_uses_its_base_url():
    cred = Credential("openai-compatibility", "svc", secret="sk-or", base_url="http://127.0.0.1:9005/api/v1")
    r = request_for(cred)
    assert r.url == "http://127.0.0.1:9005/api/v1/models" and r.headers == {"authorization": "Bearer sk-or"}


def test_logins_requests():
    claude = Credential("claude", "c.json", secret="tok", kind="oauth", path="/a/c.json")
    r = request_for(claude)
    assert r.url == "http://127.0.0.1:9001/v1/models?limit=1000"
    assert r.headers["authorization"] == "Bearer tok" and r.headers["anthropic-beta"] == "oauth-2025-04-20"
    codex = Credential("codex", "x.json", secret="tok", kind="oauth", path="/a/x.json", account_id="acct-1")
    r = request_for(codex)
    assert r.url == "http://127.0.0.1:9002/gw/backend-api/codex/models?client_version=0.99.0"
    assert r.headers["chatgpt-account-id"] == "acct-1"
    ag = Credential("antigravity", "g.json", secret="tok", kind="oauth", path="/a/g.json")
    r = request_for(ag)
    assert (r.method, r.url, r.body) == ("POST", "http://127.0.0.1:9003/v1internal:fetchAvailableModels", b"{}")
    assert r.headers["user-agent"].startswith("antigravity/")


@pytest.mark.parametrize("provider", ["gemini-cli", "vertex", "qwen", "iflow", "kimi", "xai"])
def test_kinds_without_a_confirmed_listing_keep_their_built_in_list(provider):
    kind = "service-account" if provider == "vertex" else "oauth"
    assert lister(Credential(provider, "f.json", secret="t", kind=kind, path="/a/f.json")) is None


def test_a_credential_with_models_is_not_asked():
    config = parse_config("claude-api-key:\n  - api-key: sk-ant-x\n    models: [{name: claude-opus-4-7}]\n")
    (cred,) = credentials_from_config(config)
    assert lister(cred) is None


# -- the router serves what was listed ----------------------------------------------------------

CONFIG = textwrap.dedent(
    """
    claude-api-key:
      - api-key: sk-ant-one-0001
    gemini-api-key:
      - api-key: AIza-two-0002
    codex-api-key:
      - api-key: sk-codex-three-0003
    """
)


def test_listed_models_are_routed_listed_and_say_who_serves_them():
    gemini, claude, codex = credentials_from_config(parse_config(CONFIG))  # in CLIProxyAPI's order
    router = Router(
        [gemini, claude, codex],
        listings={claude.id: ("claude-opus-4-7", "sonnet-next", "shared-1"), codex.id: ("gpt-5.2", "shared-1")},
    )
    # Not of the claude family, and not in the built-in list: routed because the upstream listed it.
    assert [r.credential for r in router.resolve("sonnet-next")] == [claude]
    assert [r.credential for r in router.resolve("Shared-1")] == [claude, codex]
    # Families still route what a listing leaves out (undated aliases, new releases).
    assert [r.credential for r in router.resolve("claude-haiku-4-5")] == [claude]
    models = {m.id: m for m in router.models()}
    assert models["shared-1"].providers == ("claude", "codex")
    # Gemini's listing did not answer: its built-in list stands in.
    assert {"gemini-2.5-pro", "gemini-2.5-flash"} <= set(models)
    assert "claude-sonnet-4-5" not in models  # the built-in claude list is gone once listed


def test_without_a_listing_nothing_outside_the_families_routes():
    router = Router(credentials_from_config(parse_config(CONFIG)))
    with pytest.raises(LookupError):
        router.resolve("sonnet-next")


def test_runtime_forgets_the_listing_of_a_credential_that_left():
    runtime = Runtime(parse_config(CONFIG))
    claude = runtime.router.credentials[1]
    runtime.set_listing(claude.id, ("sonnet-next",))
    assert runtime.router.resolve("sonnet-next")
    runtime.apply(parse_config("gemini-api-key:\n  - api-key: AIza-two-0002\n"))
    assert claude.id not in runtime.listings
    assert "sonnet-next" not in {m.id for m in runtime.router.models()}


def test_each_shape_names_the_providers():
    models = [ListedModel("shared-1", "claude", ("claude", "codex"))]
    assert json.loads(openai_models(models))["data"][0]["providers"] == ["claude", "codex"]
    assert json.loads(anthropic_models(models))["data"][0]["providers"] == ["claude", "codex"]
    gemini = json.loads(gemini_models(models))["models"][0]
    assert gemini["description"] == "shared-1, served by cliproxy (claude, codex)"


def test_config_block():
    config = parse_config("model-listing:\n  interval-seconds: 0.5\n  timeout-seconds: 2\n")
    assert (config.model_listing.enabled, config.model_listing.interval_seconds) == (True, 0.5)
    with pytest.raises(Exception, match="model-listing.intervall"):
        parse_config("model-listing:\n  intervall: 3\n")
