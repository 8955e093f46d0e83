"""routing/endpoints.py (what a client request is) and routing/upstream.py (where it goes)."""

from __future__ import annotations

import pytest

from auth.credential import Credential
from routing.endpoints import Endpoint, Kind, client_key, guess_format, match
from routing.router import PROVIDER_FORMATS
from routing.upstream import ClientRequest, UpstreamTarget, header_list, redirect, target
from translators.formats import Format

# -- match: generation routes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "fmt"),
    [
        ("/v1/chat/completions", Kind.GENERATE, Format.OPENAI_CHAT),
        ("/chat/completions", Kind.GENERATE, Format.OPENAI_CHAT),
        ("/v1/responses", Kind.GENERATE, Format.OPENAI_RESPONSES),
        ("/responses", Kind.GENERATE, Format.OPENAI_RESPONSES),
        ("/v1/completions", Kind.GENERATE, Format.OPENAI_COMPLETIONS),
        ("/completions", Kind.GENERATE, Format.OPENAI_COMPLETIONS),
        ("/v1/messages", Kind.GENERATE, Format.ANTHROPIC),
        ("/v1/messages/count_tokens", Kind.COUNT_TOKENS, Format.ANTHROPIC),
        ("/v1/messages/", Kind.GENERATE, Format.ANTHROPIC),
    ],
)
def test_post_routes(path, kind, fmt):
    endpoint = match("POST", path, {})
    assert (endpoint.kind, endpoint.format) == (kind, fmt)
    assert endpoint.model is None


@pytest.mark.parametrize("version", ["v1beta", "v1"])
@pytest.mark.parametrize(
    ("action", "kind", "streams"),
    [
        ("generateContent", Kind.GENERATE, False),
        ("streamGenerateContent", Kind.GENERATE, True),
        ("countTokens", Kind.COUNT_TOKENS, False),
    ],
)
def test_gemini_calls_carry_model_action_and_version(version, action, kind, streams):
    endpoint = match("POST", f"/{version}/models/gemini-2.5-pro:{action}", {})
    assert endpoint == Endpoint(kind, Format.GEMINI, "gemini-2.5-pro", action, version)
    assert endpoint.streams_by_path is streams


def test_gemini_model_may_carry_a_prefix():
    endpoint = match("POST", "/v1beta/models/work/gemini-2.5-flash:streamGenerateContent", {})
    assert endpoint.model == "work/gemini-2.5-flash"
    assert endpoint.action == "streamGenerateContent"


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/gemini-2.5-pro:embedContent",
        "/v1beta/models/gemini-2.5-pro",
        "/v2/models/gemini-2.5-pro:generateContent",
        "/v1/embeddings",
        "/v1/messages/batches",
        "/",
    ],
)
def test_unknown_post_routes_are_none(path):
    assert match("POST", path, {}) is None


def test_generation_routes_need_post():
    assert match("GET", "/v1/chat/completions", {}) is None
    assert match("PUT", "/v1/messages", {}) is None
    assert match("DELETE", "/v1beta/models/gemini-2.5-pro:generateContent", {}) is None


# -- match: listings and health -----------------------------------------------------------


def listing_format(headers: dict[str, str], path: str = "/v1/models", method: str = "GET"):
    endpoint = match(method, path, headers)
    assert endpoint is not None and endpoint.kind is Kind.LIST_MODELS
    return endpoint.format


def test_v1_models_is_openai_shaped_by_default():
    assert listing_format({}) is Format.OPENAI_CHAT
    assert listing_format({"authorization": "Bearer k", "user-agent": "OpenAI/Python 1.99"}) is Format.OPENAI_CHAT


def test_v1_models_is_anthropic_shaped_for_anthropic_clients():
    assert listing_format({"anthropic-version": "2023-06-01"}) is Format.ANTHROPIC
    assert listing_format({"user-agent": "claude-cli/2.0.14 (external, cli)"}) is Format.ANTHROPIC


@pytest.mark.parametrize(
    "headers", [{"x-goog-api-key": "k"}, {"x-goog-api-client": "google-genai-sdk/1.50.0 gl-python/3.12"}]
)
def test_v1_models_is_gemini_shaped_for_google_clients(headers):
    assert listing_format(headers) is Format.GEMINI


def test_v1beta_models_is_gemini_shaped():
    assert listing_format({}, "/v1beta/models") is Format.GEMINI
    assert listing_format({"anthropic-version": "2023-06-01"}, "/v1beta/models") is Format.GEMINI


def test_head_works_like_get_and_trailing_slash_is_ignored():
    assert listing_format({}, "/v1/models/", "HEAD") is Format.OPENAI_CHAT


def test_gemini_get_model():
    assert match("GET", "/v1beta/models/gemini-2.5-pro", {}) == Endpoint(
        Kind.GET_MODEL, Format.GEMINI, "gemini-2.5-pro", version="v1beta"
    )
    assert match("GET", "/v1/models/gemini-2.5-pro", {"x-goog-api-key": "k"}).kind is Kind.GET_MODEL


def test_v1_get_model_without_google_headers_is_not_a_gemini_route():
    assert match("GET", "/v1/models/gemini-2.5-pro", {}) is None


def test_healthz():
    assert match("GET", "/healthz", {}).kind is Kind.HEALTH
    assert match("POST", "/healthz", {}) is None


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/model", "/metrics", "/v0/management/config"])
def test_unknown_get_routes_are_none(path):
    assert match("GET", path, {}) is None


# -- guess_format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "fmt"),
    [
        ("/v1beta/anything", {}, Format.GEMINI),
        ("/v1alpha/x", {}, Format.GEMINI),
        ("/v1/whatever", {"x-goog-api-key": "k"}, Format.GEMINI),
        ("/v1/messages/batches", {}, Format.ANTHROPIC),
        ("/v1/whatever", {"anthropic-version": "2023-06-01"}, Format.ANTHROPIC),
        ("/v1/whatever", {"user-agent": "claude-cli/2.0"}, Format.ANTHROPIC),
        ("/v1/completions", {}, Format.OPENAI_CHAT),
        ("/nothing", {"user-agent": "curl/8"}, Format.OPENAI_CHAT),
    ],
)
def test_guess_format(path, headers, fmt):
    assert guess_format(path, headers) is fmt


# -- client_key -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "key"),
    [
        ({"authorization": "Bearer sk-proxy"}, {}, "sk-proxy"),
        ({"authorization": "bearer   sk-proxy "}, {}, "sk-proxy"),
        ({"authorization": "sk-proxy"}, {}, "sk-proxy"),
        ({"x-api-key": "sk-proxy"}, {}, "sk-proxy"),
        ({"x-goog-api-key": "sk-proxy"}, {}, "sk-proxy"),
        ({}, {"key": "sk-proxy"}, "sk-proxy"),
        ({}, {"auth_token": "sk-proxy"}, "sk-proxy"),
        ({}, {}, None),
        ({"authorization": ""}, {"key": "from-query"}, "from-query"),
    ],
)
def test_client_key(headers, query, key):
    assert client_key(headers, query) == key


def test_authorization_wins_over_other_places():
    headers = {"authorization": "Bearer first", "x-api-key": "second", "x-goog-api-key": "third"}
    assert client_key(headers, {"key": "fourth"}) == "first"
    assert client_key({"x-api-key": "second", "x-goog-api-key": "third"}, {}) == "second"


# -- upstream: redirect -------------------------------------------------------------------------

OVERRIDES = {"api.anthropic.com": "http://127.0.0.1:9001/gateway"}


def test_redirect_replaces_scheme_and_host_and_keeps_path_and_query():
    assert (
        redirect("https://api.anthropic.com/v1/messages?beta=true", OVERRIDES)
        == "http://127.0.0.1:9001/gateway/v1/messages?beta=true"
    )


def test_redirect_matches_the_host_case_insensitively_and_ignores_the_port():
    assert redirect("https://API.Anthropic.com:443/v1/messages", OVERRIDES) == (
        "http://127.0.0.1:9001/gateway/v1/messages"
    )


def test_redirect_to_a_bare_base_url():
    assert redirect("https://api.anthropic.com/v1/messages", {"api.anthropic.com": "http://h:1"}) == (
        "http://h:1/v1/messages"
    )


@pytest.mark.parametrize(
    "url",
    ["https://api.openai.com/v1/responses", "https://anthropic.com/v1/messages", "https://x.api.anthropic.com/a"],
)
def test_redirect_leaves_other_hosts_untouched(url):
    assert redirect(url, OVERRIDES) == url


def test_redirect_without_overrides_is_identity():
    assert redirect("https://api.anthropic.com/v1/messages?x=1", {}) == "https://api.anthropic.com/v1/messages?x=1"


# -- upstream: target ---------------------------------------------------------------------------


def client(
    endpoint: Endpoint,
    path: str,
    *,
    model: str = "m",
    query: tuple[tuple[str, str], ...] = (),
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> ClientRequest:
    headers = headers or {}
    return ClientRequest(
        endpoint=endpoint,
        model=model,
        stream=stream,
        method="POST",
        path=path,
        query=query,
        headers=headers,
        raw_headers=tuple(headers.items()),
        body=b"{}",
        parsed={},
    )


ANTHROPIC_MESSAGES = client(Endpoint(Kind.GENERATE, Format.ANTHROPIC), "/v1/messages")
OPENAI_CHAT = client(Endpoint(Kind.GENERATE, Format.OPENAI_CHAT), "/v1/chat/completions")
OPENAI_RESPONSES = client(Endpoint(Kind.GENERATE, Format.OPENAI_RESPONSES), "/v1/responses")


def gemini_call(action: str = "generateContent", version: str = "v1beta", **kw) -> ClientRequest:
    endpoint = Endpoint(Kind.GENERATE, Format.GEMINI, "work/gemini-alias", action, version)
    return client(endpoint, f"/{version}/models/work/gemini-alias:{action}", **kw)


def credential(provider: str, **kw) -> Credential:
    return Credential(provider=provider, source=f"{provider}[0]", secret="sk-pool-secret", **kw)


def upstream_target(cred: Credential, req: ClientRequest, model: str, overrides: dict) -> UpstreamTarget:
    """Where a same-format call goes: the credential speaks the client's own format."""
    assert PROVIDER_FORMATS[cred.provider] is req.endpoint.format
    return target(cred, req, model, PROVIDER_FORMATS[cred.provider], overrides)


def test_claude_target():
    t = upstream_target(credential("claude"), ANTHROPIC_MESSAGES, "claude-sonnet-4-5", {})
    assert t.url == "https://api.anthropic.com/v1/messages"
    assert t.auth_headers == {"x-api-key": "sk-pool-secret"}
    assert t.extra_headers == {}


def test_claude_count_tokens_keeps_its_path():
    req = client(Endpoint(Kind.COUNT_TOKENS, Format.ANTHROPIC), "/v1/messages/count_tokens")
    assert upstream_target(credential("claude"), req, "m", {}).url == "https://api.anthropic.com/v1/messages/count_tokens"


def test_claude_target_keeps_the_query():
    req = client(Endpoint(Kind.GENERATE, Format.ANTHROPIC), "/v1/messages", query=(("beta", "true"),))
    assert upstream_target(credential("claude"), req, "m", {}).url == "https://api.anthropic.com/v1/messages?beta=true"


def test_claude_target_with_base_url():
    cred = credential("claude", base_url="https://claude-gw.example.com/anthropic")
    assert upstream_target(cred, ANTHROPIC_MESSAGES, "m", {}).url == "https://claude-gw.example.com/anthropic/v1/messages"


def test_claude_target_follows_upstream_overrides():
    t = upstream_target(credential("claude"), ANTHROPIC_MESSAGES, "m", {"api.anthropic.com": "http://127.0.0.1:9001"})
    assert t.url == "http://127.0.0.1:9001/v1/messages"


def test_gemini_target_uses_the_upstream_model_in_the_path():
    t = upstream_target(credential("gemini"), gemini_call(), "gemini-2.5-pro", {})
    assert t.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert t.auth_headers == {"x-goog-api-key": "sk-pool-secret"}


def test_gemini_target_keeps_version_and_action():
    t = upstream_target(credential("gemini"), gemini_call("streamGenerateContent", "v1"), "gemini-2.5-flash", {})
    assert t.url == "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:streamGenerateContent"


def test_gemini_target_drops_the_client_key_but_keeps_other_query_params():
    req = gemini_call("streamGenerateContent", query=(("key", "client-key"), ("alt", "sse")))
    t = upstream_target(credential("gemini"), req, "gemini-2.5-pro", {})
    assert t.url.endswith(":streamGenerateContent?alt=sse")
    assert "client-key" not in t.url


def test_client_auth_token_query_param_is_dropped():
    req = gemini_call(query=(("auth_token", "client-key"),))
    assert "?" not in upstream_target(credential("gemini"), req, "g", {}).url


def test_gemini_target_follows_upstream_overrides():
    overrides = {"generativelanguage.googleapis.com": "http://127.0.0.1:9002/google"}
    t = upstream_target(credential("gemini"), gemini_call(), "gemini-2.5-pro", overrides)
    assert t.url == "http://127.0.0.1:9002/google/v1beta/models/gemini-2.5-pro:generateContent"


def test_codex_target():
    t = upstream_target(credential("codex"), OPENAI_RESPONSES, "gpt-5", {})
    assert t.url == "https://api.openai.com/v1/responses"
    assert t.auth_headers == {"authorization": "Bearer sk-pool-secret"}


def test_codex_target_follows_upstream_overrides():
    t = upstream_target(credential("codex"), OPENAI_RESPONSES, "gpt-5", {"api.openai.com": "http://127.0.0.1:9003"})
    assert t.url == "http://127.0.0.1:9003/v1/responses"


def test_openai_compatibility_target():
    cred = credential("openai-compatibility", base_url="https://openrouter.ai/api/v1", service="openrouter")
    t = upstream_target(cred, OPENAI_CHAT, "moonshotai/kimi-k2", {})
    assert t.url == "https://openrouter.ai/api/v1/chat/completions"
    assert t.auth_headers == {"authorization": "Bearer sk-pool-secret"}


# A credential that speaks another API than the client: that API's endpoint for the same call.


def test_cross_format_to_gemini_uses_generate_content():
    req = client(Endpoint(Kind.GENERATE, Format.ANTHROPIC), "/v1/messages", query=(("beta", "true"),))
    t = target(credential("gemini"), req, "gemini-2.5-pro", Format.GEMINI, {})
    assert t.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    assert t.auth_headers == {"x-goog-api-key": "sk-pool-secret"}


def test_cross_format_streaming_to_gemini_asks_for_sse():
    req = client(Endpoint(Kind.GENERATE, Format.OPENAI_CHAT), "/v1/chat/completions", stream=True)
    t = target(credential("gemini"), req, "gemini-2.5-pro", Format.GEMINI, {})
    assert t.url.endswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")


def test_cross_format_count_tokens():
    req = client(Endpoint(Kind.COUNT_TOKENS, Format.ANTHROPIC), "/v1/messages/count_tokens", stream=True)
    assert target(credential("gemini"), req, "g", Format.GEMINI, {}).url.endswith("/models/g:countTokens")
    gemini_count = client(
        Endpoint(Kind.COUNT_TOKENS, Format.GEMINI, "g", "countTokens"), "/v1beta/models/g:countTokens"
    )
    t = target(credential("claude"), gemini_count, "claude-x", Format.ANTHROPIC, {})
    assert t.url == "https://api.anthropic.com/v1/messages/count_tokens"


def test_cross_format_from_gemini_drops_the_gemini_query():
    req = gemini_call(query=(("key", "client-key"), ("foo", "bar")))
    t = target(credential("claude"), req, "claude-sonnet-4-5", Format.ANTHROPIC, {})
    assert t.url == "https://api.anthropic.com/v1/messages"
    assert t.auth_headers == {"x-api-key": "sk-pool-secret"}


@pytest.mark.parametrize(
    ("provider", "upstream"),
    [
        ("claude", Format.ANTHROPIC),
        ("codex", Format.OPENAI_RESPONSES),
        ("openai-compatibility", Format.OPENAI_CHAT),
    ],
)
def test_cross_format_streaming_to_a_non_gemini_api_has_no_query(provider, upstream):
    req = gemini_call("streamGenerateContent", query=(("alt", "sse"),), stream=True)
    cred = credential(provider, base_url="https://llm.example.com/v1" if provider == "openai-compatibility" else "")
    assert "?" not in target(cred, req, "some-model", upstream, {}).url


@pytest.mark.parametrize(
    ("provider", "upstream", "url"),
    [
        ("codex", Format.OPENAI_RESPONSES, "https://api.openai.com/v1/responses"),
        ("openai-compatibility", Format.OPENAI_CHAT, "https://llm.example.com/v1/chat/completions"),
    ],
)
def test_cross_format_to_openai_apis(provider, upstream, url):
    cred = credential(provider, base_url="https://llm.example.com/v1" if provider != "codex" else "")
    t = target(cred, ANTHROPIC_MESSAGES, "some-model", upstream, {})
    assert t.url == url
    assert t.auth_headers == {"authorization": "Bearer sk-pool-secret"}


def test_configured_headers_are_added():
    cred = credential("claude", headers={"X-Team": "core", "anthropic-beta": "tools-2024"})
    assert upstream_target(cred, ANTHROPIC_MESSAGES, "m", {}).extra_headers == {
        "X-Team": "core",
        "anthropic-beta": "tools-2024",
    }


def test_dollar_header_values_copy_the_client_header():
    cred = credential("claude", headers={"X-Session": "$x-claude-code-session-id", "X-Missing": "$x-absent"})
    req = client(
        Endpoint(Kind.GENERATE, Format.ANTHROPIC), "/v1/messages", headers={"x-claude-code-session-id": "s-123"}
    )
    # A header the client did not send is left out.
    assert upstream_target(cred, req, "m", {}).extra_headers == {"X-Session": "s-123"}


def test_dollar_header_names_are_case_insensitive():
    cred = credential("claude", headers={"X-Session": "$X-Session-ID"})
    req = client(Endpoint(Kind.GENERATE, Format.ANTHROPIC), "/v1/messages", headers={"x-session-id": "s-9"})
    assert upstream_target(cred, req, "m", {}).extra_headers == {"X-Session": "s-9"}


# -- upstream: header_list ----------------------------------------------------------------------


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [k.lower() for k, _ in headers]


CLIENT_HEADERS = (
    ("Host", "127.0.0.1:8317"),
    ("Authorization", "Bearer proxy-client-key"),
    ("X-Api-Key", "proxy-client-key"),
    ("x-goog-api-key", "proxy-client-key"),
    ("Content-Length", "999"),
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("Content-Type", "application/json"),
    ("anthropic-version", "2023-06-01"),
    ("User-Agent", "claude-cli/2.0.14"),
    ("X-Team", "from-client"),
)


def test_header_list_replaces_client_auth_and_sets_content_length():
    t = UpstreamTarget("https://api.anthropic.com/v1/messages", {"x-api-key": "sk-pool"}, {})
    headers = header_list(CLIENT_HEADERS, t, {}, 42)
    assert "proxy-client-key" not in str(headers)
    assert ("x-api-key", "sk-pool") in headers
    assert names(headers).count("x-api-key") == 1
    assert ("content-length", "42") in headers
    assert names(headers).count("content-length") == 1


@pytest.mark.parametrize(
    "dropped",
    ["host", "authorization", "x-goog-api-key", "keep-alive", "transfer-encoding"],
)
def test_header_list_drops_hop_by_hop_and_client_headers(dropped):
    t = UpstreamTarget("u", {"x-api-key": "sk-pool"}, {})
    assert dropped not in names(header_list(CLIENT_HEADERS, t, {}, 0))


def test_header_list_keeps_only_a_keep_alive_connection_header():
    """`Connection: keep-alive` is what the pooled upstream connection does anyway, so an
    intercepted CLI's header set stays as sent; any other Connection header stays here."""
    t = UpstreamTarget("u", {"x-api-key": "sk-pool"}, {})
    assert ("Connection", "keep-alive") in header_list(CLIENT_HEADERS, t, {}, 0)
    closing = (("Connection", "close"), ("Content-Type", "application/json"))
    assert "connection" not in names(header_list(closing, t, {}, 0))


def test_header_list_keeps_the_clients_other_headers_in_order():
    t = UpstreamTarget("u", {"x-api-key": "sk-pool"}, {})
    wanted = ("Content-Type", "anthropic-version", "User-Agent")
    kept = [h for h in header_list(CLIENT_HEADERS, t, {}, 0) if h[0] in wanted]
    assert kept == [
        ("Content-Type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("User-Agent", "claude-cli/2.0.14"),
    ]


def test_header_list_configured_headers_replace_the_clients():
    t = UpstreamTarget("u", {"authorization": "Bearer sk-pool"}, {"x-team": "configured"})
    headers = header_list(CLIENT_HEADERS, t, {}, 0)
    assert [v for k, v in headers if k.lower() == "x-team"] == ["configured"]
    assert [v for k, v in headers if k.lower() == "authorization"] == ["Bearer sk-pool"]


def test_header_list_translation_headers_replace_the_clients():
    t = UpstreamTarget("u", {"x-api-key": "sk-pool"}, {})
    translation = {"content-type": "application/json", "accept-encoding": "identity"}
    client_headers = (("Content-Type", "text/plain"), ("Accept-Encoding", "gzip, br"), ("X-Keep", "1"))
    headers = header_list(client_headers, t, translation, 7)
    assert sorted(headers) == sorted(
        [
            ("X-Keep", "1"),
            ("content-type", "application/json"),
            ("accept-encoding", "identity"),
            ("x-api-key", "sk-pool"),
            ("content-length", "7"),
        ]
    )


def test_header_list_drops_every_hop_by_hop_header():
    client_headers = (
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
        ("Trailer", "X-Checksum"),
    )
    t = UpstreamTarget("u", {"x-api-key": "sk-pool"}, {})
    assert names(header_list(client_headers, t, {}, 0)) == ["x-api-key", "content-length"]
