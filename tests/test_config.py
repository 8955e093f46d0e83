"""routing/config.py: parsing a CLIProxyAPI-style config.yaml, its defaults and its error messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routing.config import (
    API_KEY_ENV,
    EXAMPLE_CLIENT_KEY,
    ConfigError,
    RemoteManagement,
    config_warnings,
    parse_config,
    unsupported_keys,
)

FULL_CONFIG = textwrap.dedent(
    """
    host: 0.0.0.0
    port: 9000
    auth-dir: /tmp/auths
    api-keys:
      - client-key-1
      - client-key-2
    debug: true
    request-retry: 5
    max-retry-credentials: 2
    max-retry-interval: 12.5
    disable-cooling: true
    transient-error-cooldown-seconds: 15
    force-model-prefix: true
    routing:
      strategy: fill-first
    quota-exceeded:
      switch-project: false
      switch-preview-model: false
    remote-management:
      allow-remote: true
      secret-key: mgmt-secret
      disable-control-panel: true
    upstream-overrides:
      API.Anthropic.com: http://127.0.0.1:9001/
      generativelanguage.googleapis.com: https://gw.example.com/google
    gemini-api-key:
      - api-key: AIzaSy-gemini-key
        prefix: work
        excluded-models: ["*-pro"]
    claude-api-key:
      - api-key: sk-ant-claude-key
        priority: 10
        base-url: https://claude-gw.example.com/
        proxy-url: socks5://proxy.example.com:1080
        headers:
          X-Team: core
          X-Session: $x-client-session
        models:
          - name: claude-sonnet-4-5-20250929
            alias: sonnet
          - name: claude-haiku-4-5
    codex-api-key:
      - api-key: sk-codex-key
        base-url: https://api.openai.com/v1
    openai-compatibility:
      - name: openrouter
        base-url: https://openrouter.ai/api/v1
        prefix: or
        priority: 3
        api-key-entries:
          - api-key: sk-or-1
            proxy-url: socks5://p:1080
          - api-key: sk-or-2
        models:
          - name: moonshotai/kimi-k2
            alias: kimi-k2
        excluded-models: ["*free*"]
      - name: parked
        base-url: https://parked.example.com/v1
        disabled: true
        api-key-entries:
          - api-key: sk-parked
    tls:
      enable: false
      cert: ""
    pprof:
      enable: false
      addr: 127.0.0.1:8316
    payload:
      default: []
    """
)


@pytest.fixture
def full():
    return parse_config(FULL_CONFIG)


def error_of(text: str, source: str = "config.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source)
    return str(info.value)


# -- accepted shapes ---------------------------------------------------------------------


def test_top_level_scalars_are_read_from_kebab_case_keys(full):
    assert (full.host, full.port, full.auth_dir) == ("0.0.0.0", 9000, "/tmp/auths")
    assert full.api_keys == ["client-key-1", "client-key-2"]
    assert full.debug is True
    assert full.request_retry == 5
    assert full.max_retry_credentials == 2
    assert full.max_retry_interval == 12.5
    assert full.disable_cooling is True
    assert full.force_model_prefix is True


def test_nested_sections_are_read(full):
    assert full.routing.strategy == "fill-first"
    assert full.quota_exceeded.switch_project is False
    assert full.quota_exceeded.switch_preview_model is False
    assert full.remote_management.allow_remote is True
    assert full.remote_management.secret_key == "mgmt-secret"
    assert full.remote_management.disable_control_panel is True


def test_api_key_lists_of_every_vendor_are_read(full):
    gemini, = full.gemini_api_key
    assert gemini.api_key == "AIzaSy-gemini-key"
    assert gemini.prefix == "work"
    assert gemini.excluded_models == ["*-pro"]

    claude, = full.claude_api_key
    assert claude.priority == 10
    assert claude.base_url == "https://claude-gw.example.com/"
    assert claude.proxy_url == "socks5://proxy.example.com:1080"
    assert claude.headers == {"X-Team": "core", "X-Session": "$x-client-session"}
    assert [(m.name, m.alias) for m in claude.models] == [
        ("claude-sonnet-4-5-20250929", "sonnet"),
        ("claude-haiku-4-5", ""),
    ]

    codex, = full.codex_api_key
    assert codex.api_key == "sk-codex-key"


def test_openai_compatibility_entries_are_read(full):
    router, parked = full.openai_compatibility
    assert router.name == "openrouter"
    assert router.base_url == "https://openrouter.ai/api/v1"
    assert router.prefix == "or"
    assert router.priority == 3
    assert [k.api_key for k in router.api_key_entries] == ["sk-or-1", "sk-or-2"]
    assert router.api_key_entries[0].proxy_url == "socks5://p:1080"
    assert [(m.name, m.alias) for m in router.models] == [("moonshotai/kimi-k2", "kimi-k2")]
    assert router.excluded_models == ["*free*"]
    assert parked.disabled is True


def test_upstream_overrides_lowercase_the_host_and_drop_the_trailing_slash(full):
    assert full.upstream_overrides == {
        "api.anthropic.com": "http://127.0.0.1:9001",
        "generativelanguage.googleapis.com": "https://gw.example.com/google",
    }


def test_credential_count_skips_disabled_services(full):
    # 1 gemini + 1 claude + 1 codex + 2 openrouter keys; "parked" is disabled.
    assert full.credential_count == 5


def test_unknown_cliproxyapi_keys_are_ignored_and_listed(full):
    assert not hasattr(full, "tls")
    assert unsupported_keys(FULL_CONFIG) == ["payload", "pprof", "tls"]


def test_unsupported_keys_is_empty_for_a_config_of_known_keys():
    assert unsupported_keys("port: 1234\nrouting:\n  strategy: fill-first\n") == []


def test_prefix_surrounding_slashes_are_trimmed():
    config = parse_config("claude-api-key:\n  - api-key: k\n    prefix: /team/\n")
    assert config.claude_api_key[0].prefix == "team"


# -- defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}"])
def test_an_empty_config_gets_the_defaults(text):
    config = parse_config(text)
    assert config.host == "127.0.0.1"
    assert config.port == 8317
    assert config.auth_dir == "~/.cli-proxy-api"
    assert config.request_retry == 3
    assert config.routing.strategy == "round-robin"
    assert config.disable_cooling is False
    assert config.force_model_prefix is False
    assert config.api_keys == []
    assert config.credential_count == 0


def test_auth_path_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_config("").auth_path == tmp_path / ".cli-proxy-api"


def test_an_empty_api_keys_entry_means_no_keys():
    assert parse_config("api-keys:\n").api_keys == []


# -- derived values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "effective"),
    [(0, 60.0), (15, 15.0), (2.5, 2.5), (-1, 0.0), (-30, 0.0)],
)
def test_transient_cooldown(configured, effective):
    config = parse_config(f"transient-error-cooldown-seconds: {configured}\n")
    assert config.transient_cooldown == effective


def test_client_keys_come_from_the_config(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    config = parse_config("api-keys: [one, '', two]\n")
    assert config.client_keys == ("one", "two")


def test_client_keys_include_the_environment_key(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert parse_config("api-keys: [one]\n").client_keys == ("one", "from-env")
    assert parse_config("").client_keys == ("from-env",)


def test_an_empty_environment_key_adds_nothing(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "")
    assert parse_config("").client_keys == ()


# -- errors -----------------------------------------------------------------------------


def test_error_names_the_source_file_and_the_key_path_of_a_list_entry():
    message = error_of(
        "claude-api-key:\n  - api-key: k\n    priority: high\n", source="/etc/cliproxy/config.yaml"
    )
    assert message.startswith("/etc/cliproxy/config.yaml: ")
    assert "claude-api-key[0].priority" in message


def test_error_names_a_nested_key_path():
    message = error_of("routing:\n  strategy: random\n")
    assert "routing.strategy" in message
    assert "round-robin" in message  # says what is allowed


def test_error_names_the_index_of_the_bad_entry():
    text = "gemini-api-key:\n  - api-key: a\n  - api-key: b\n    excluded-models: nope\n"
    assert "gemini-api-key[1].excluded-models" in error_of(text)


def test_error_path_inside_openai_compatibility_key_entries():
    text = (
        "openai-compatibility:\n"
        "  - name: svc\n    base-url: https://x.example.com/v1\n"
        "    api-key-entries:\n      - proxy-url: socks5://p\n"
    )
    assert "openai-compatibility[0].api-key-entries[0].api-key" in error_of(text)


def test_a_missing_api_key_is_an_error():
    assert "claude-api-key[0].api-key" in error_of("claude-api-key:\n  - priority: 1\n")


def test_an_empty_api_key_is_an_error():
    assert "codex-api-key[0].api-key" in error_of("codex-api-key:\n  - api-key: ''\n")


def test_invalid_yaml_names_the_line():
    message = error_of("port: 8317\nhost: a\n  nested: b\n", source="my.yaml")
    assert message.startswith("my.yaml:")
    assert "line 3" in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_an_error(text):
    assert "expected a mapping" in error_of(text)


@pytest.mark.parametrize("url", ["ftp://gw.example.com", "gw.example.com", "127.0.0.1:9001"])
def test_an_upstream_override_must_be_an_http_url(url):
    message = error_of(f"upstream-overrides:\n  api.anthropic.com: '{url}'\n")
    assert "upstream-overrides" in message
    assert "api.anthropic.com" in message


def test_a_prefix_with_a_slash_inside_is_an_error():
    message = error_of("claude-api-key:\n  - api-key: k\n    prefix: team/a\n")
    assert "claude-api-key[0].prefix" in message
    assert "/" in message


@pytest.mark.parametrize("port", [0, 70000, "http"])
def test_a_bad_port_is_an_error(port):
    assert "port" in error_of(f"port: {port}\n")


def test_negative_retry_settings_mean_zero_as_in_cliproxyapi():
    # CLIProxyAPI's SetRetryConfig clamps each of these to 0; its example documents
    # "0 or below" for max-retry-interval.
    config = parse_config("request-retry: -1\nmax-retry-credentials: -3\nmax-retry-interval: -5\n")
    assert (config.request_retry, config.max_retry_credentials, config.max_retry_interval) == (0, 0, 0)


# -- keys neither this proxy nor CLIProxyAPI knows -----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "gemini-api-key:\n  - api-key: k\n    baseurl: https://gw.example.com\n",
            "gemini-api-key[0].baseurl: unknown key; did you mean base-url?",
        ),
        (
            "claude-api-key:\n  - api-key: a\n  - api-key: b\n    base_url: https://gw.example.com\n",
            "claude-api-key[1].base_url: unknown key; did you mean base-url?",
        ),
        ("claude-api-keys:\n  - api-key: k\n", "claude-api-keys: unknown key; did you mean claude-api-key?"),
        ("routing:\n  stratgy: fill-first\n", "routing.stratgy: unknown key; did you mean strategy?"),
        (
            "openai-compatibility:\n  - name: a\n    base-url: https://x.example.com/v1\n"
            "    api-key-entries:\n      - api-key: k\n        proxyurl: http://p:3128\n",
            "openai-compatibility[0].api-key-entries[0].proxyurl: unknown key; did you mean proxy-url?",
        ),
        (
            "claude-api-key:\n  - api-key: k\n    models:\n      - name: m\n        alais: a\n",
            "claude-api-key[0].models[0].alais: unknown key; did you mean alias?",
        ),
        ("interception:\n  no-credentials: refuse\n", "interception.no-credentials: unknown key; did you mean no-credential?"),
        ("colour: blue\n", "colour: unknown key"),
    ],
)
def test_an_unknown_key_is_an_error_with_its_full_path_and_a_suggestion(text, expected):
    assert error_of(text) == f"config.yaml: {expected}"


def test_an_unknown_key_that_may_be_a_pasted_secret_is_not_echoed():
    message = error_of(f"claude-api-key:\n  - {SECRET}:\n")
    assert "claude-api-key[0]: unknown key (not shown: it may be a secret)" in message
    assert SECRET not in message


def test_cliproxyapi_keys_at_any_depth_are_named_once_not_refused():
    text = textwrap.dedent(
        """
        claude-api-key:
          - api-key: a
            cloak: {mode: auto}
            weight: 2
            models: [{name: claude-x, alias: x, thinking: {levels: [high]}}]
          - api-key: b
            cloak: {mode: never}
        codex-api-key:
          - api-key: c
            websockets: true
        openai-compatibility:
          - name: o
            base-url: https://o.example.com/v1
            support-prompt-cache-key: true
            api-key-entries: [{api-key: d, weight: 3}]
        routing: {strategy: fill-first, session-affinity: true}
        quota-exceeded: {antigravity-credits: true}
        oauth-model-alias: {claude: [{name: a, alias: b}]}
        """
    )
    parse_config(text)
    assert unsupported_keys(text) == [
        "claude-api-key[].cloak",
        "claude-api-key[].models[].thinking",
        "claude-api-key[].weight",
        "codex-api-key[].websockets",
        "oauth-model-alias",
        "openai-compatibility[].api-key-entries[].weight",
        "openai-compatibility[].support-prompt-cache-key",
        "quota-exceeded.antigravity-credits",
        "routing.session-affinity",
    ]


def test_a_cliproxyapi_key_of_another_vendor_is_unknown_in_this_one():
    # alpha-search exists for codex-api-key only.
    assert "claude-api-key[0].alpha-search: unknown key" in error_of(
        "claude-api-key:\n  - api-key: k\n    alpha-search: true\n"
    )


def test_the_legacy_api_keys_of_openai_compatibility_are_known():
    text = "openai-compatibility:\n  - name: o\n    base-url: https://o.example.com/v1\n    api-keys: [k1]\n"
    assert [k.api_key for k in parse_config(text).openai_compatibility[0].api_key_entries] == ["k1"]


def test_warnings_name_unsupported_keys_but_not_remote_management():
    # remote-management is supported (addons/management.py): only what is ignored is reported.
    text = "tls: {enable: true}\nremote-management:\n  secret-key: s3cret\n  allow-remote: true\n"
    warnings = config_warnings(parse_config(text), text)
    assert warnings == ["CLIProxyAPI keys not supported here, ignored: tls"]


def test_remote_management_at_its_defaults_is_no_warning():
    text = "remote-management:\n  allow-remote: false\n  secret-key: ''\n"
    assert config_warnings(parse_config(text), text) == []


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_cliproxyapi_example_config_is_refused_only_for_its_placeholder_keys():
    text = (FIXTURES / "cliproxyapi-style-config.yaml").read_text()
    message = error_of(text)
    assert message.startswith("config.yaml: api-keys[0], api-keys[1], api-keys[2]: this is the placeholder")
    assert "; " not in message  # nothing else is wrong


def test_cliproxyapi_example_config_loads_with_the_same_meaning():
    text = (FIXTURES / "cliproxyapi-style-config.yaml").read_text().replace("your-api-key-", "local-key-")
    config = parse_config(text)
    assert config.host == ""  # every interface, as CLIProxyAPI documents
    assert (config.port, config.auth_dir) == (8317, "~/.cli-proxy-api")
    assert (config.request_retry, config.max_retry_credentials, config.max_retry_interval) == (3, 0, 30)
    assert config.transient_cooldown == 60.0  # 0 keeps the legacy 60 s
    assert config.routing.strategy == "round-robin"
    assert config.remote_management == RemoteManagement()
    warning, = config_warnings(config, text)
    assert "routing: session-affinity, session-affinity-ttl" in warning


def test_every_key_entry_field_cliproxyapi_documents_loads():
    text = (FIXTURES / "cliproxyapi-style-entries.yaml").read_text()
    config = parse_config(text)
    gemini = config.gemini_api_key[0]
    assert (gemini.prefix, gemini.base_url) == ("test", "https://generativelanguage.googleapis.com")
    assert gemini.proxy_url == "socks5://proxy.example.com:1080"
    assert [(m.name, m.alias) for m in gemini.models] == [("gemini-2.5-flash", "gemini-flash")]
    assert config.openai_compatibility[0].api_key_entries[0].proxy_url == "socks5://proxy.example.com:1080"
    ignored = unsupported_keys(text)
    assert "claude-api-key[].cloak" in ignored and "codex-api-key[].alpha-search" in ignored
    assert "openai-compatibility[].models[].input-modalities" in ignored
    assert not any(key.endswith((".base-url", ".prefix", ".models", ".headers")) for key in ignored)


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("gw.example.com", "not a URL: it needs a scheme (http://, https://) and a host"),
        ("gw.example.com:443/v1", "not a URL: it needs a scheme (http://, https://) and a host"),
        ("ftp://gw.example.com", "scheme 'ftp' is not one of http://, https://"),
        ("https://", "the URL has no host"),
        ("http://gw.example.com:99999", "not a valid URL (check the host and port)"),
    ],
)
def test_a_base_url_must_be_an_http_url_with_a_host(value, problem):
    message = error_of(f"claude-api-key:\n  - api-key: {SECRET}\n    base-url: '{value}'\n")
    assert message == f"config.yaml: claude-api-key[0].base-url: {problem}"


def test_an_openai_compatibility_base_url_is_checked_too():
    text = "openai-compatibility:\n  - name: o\n    base-url: o.example.com/v1\n"
    assert "openai-compatibility[0].base-url: not a URL" in error_of(text)


@pytest.mark.parametrize(
    "value",
    ["", "direct", "none", "DIRECT", "http://p.example.com:3128", "https://p.example.com",
     "socks5://user:pw@p.example.com:1080", "socks5h://p.example.com:1080"],
)
def test_proxy_urls_cliproxyapi_accepts_load(value):
    text = f"proxy-url: '{value}'\nclaude-api-key:\n  - api-key: k\n    proxy-url: '{value}'\n"
    assert parse_config(text).proxy_url == value


@pytest.mark.parametrize("value", ["socks4://p.example.com:1080", "127.0.0.1:3128", "http://"])
def test_a_bad_proxy_url_is_an_error_at_any_level(value):
    assert "proxy-url:" in error_of(f"proxy-url: '{value}'\n")
    assert "claude-api-key[0].proxy-url:" in error_of(f"claude-api-key:\n  - api-key: k\n    proxy-url: '{value}'\n")
    compat = f"openai-compatibility:\n  - name: o\n    base-url: https://o.example.com\n    api-key-entries: [{{api-key: k, proxy-url: '{value}'}}]\n"
    assert "openai-compatibility[0].api-key-entries[0].proxy-url:" in error_of(compat)


def test_a_url_error_never_echoes_credentials_in_the_url():
    message = error_of("proxy-url: 'socks4://user:TOPSECRETPW@p.example.com:1080'\n")
    assert "TOPSECRETPW" not in message


# -- client keys anyone can read -----------------------------------------------------------


@pytest.mark.parametrize("key", ["your-api-key-1", "your-api-key-2", "your-api-key-3", EXAMPLE_CLIENT_KEY])
def test_a_placeholder_client_key_from_an_example_config_is_refused(key):
    message = error_of(f"api-keys:\n  - a-real-long-random-key-0001\n  - '{key}'\n")
    assert message.startswith("config.yaml: api-keys[1]: this is the placeholder key of an example config")


def test_several_problems_are_all_named():
    message = error_of("port: 0\nrouting:\n  strategy: x\n")
    assert "port" in message and "routing.strategy" in message


SECRET = "sk-ant-api03-TOPSECRET-0123456789abcdef"


@pytest.mark.parametrize(
    "entry",
    [
        "priority: high",
        "prefix: a/b",
        "models: not-a-list",
        "headers: [x]",
        "excluded-models: 5",
    ],
)
def test_an_error_never_echoes_an_api_key_next_to_the_bad_value(entry):
    text = f"claude-api-key:\n  - api-key: {SECRET}\n    {entry}\n"
    message = error_of(text)
    assert "claude-api-key[0]" in message
    assert SECRET not in message
    assert "TOPSECRET" not in message


@pytest.mark.parametrize(
    "text",
    [
        f"claude-api-key:\n  - api-key: [{SECRET}]\n",  # a list where a string belongs
        f"api-keys: {{{SECRET}: 1}}\n",  # a mapping where a list belongs
        f"claude-api-key:\n  - {SECRET}\n",  # a bare string where an entry belongs
        f"claude-api-key:\n  - api-key: {SECRET}\n  - api-key: {SECRET}\n    priority: [1]\n",
    ],
)
def test_an_error_never_echoes_a_misplaced_secret(text):
    assert SECRET not in error_of(text)


def test_a_yaml_error_on_the_line_of_a_secret_does_not_echo_it():
    message = error_of(f"claude-api-key:\n  - api-key: {SECRET}: oops\n")
    assert "line 2" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "text",
    [
        "gemini-api-key:\n#  - api-key: AIzaSy...\n",
        "claude-api-key:\n",
        "openai-compatibility:\n",
        "routing:\n#  strategy: fill-first\n",
        "upstream-overrides:\n",
        "claude-api-key:\n  - api-key: k\n    models:\n    excluded-models:\n    headers:\n",
    ],
)
def test_a_key_without_value_loads_as_empty(text):
    config = parse_config(text)
    assert config.routing.strategy == "round-robin"
