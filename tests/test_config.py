"""routing/config.py: parsing a CLIProxyAPI-style config.yaml, its defaults and its error messages."""

from __future__ import annotations

import textwrap

import pytest

from routing.config import API_KEY_ENV, ConfigError, parse_config, unknown_keys

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
    assert unknown_keys(FULL_CONFIG) == ["payload", "pprof", "tls"]


def test_unknown_keys_is_empty_for_a_config_of_known_keys():
    assert unknown_keys("port: 1234\nrouting:\n  strategy: fill-first\n") == []


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


def test_a_negative_request_retry_is_an_error():
    assert "request-retry" in error_of("request-retry: -1\n")


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
