"""The request log line and the client key labels (no proxy running)."""

from __future__ import annotations

from routing.client_keys import NO_KEY, key_label
from addons.usage import log_line
from routing.config import parse_config
from routing.usage import UsageRecord


def record(**kw) -> UsageRecord:
    fields = dict(
        time=0.0, client_key="key-2", client_api="openai-chat", provider="claude", credential="claude-api-key[0] (…WXYZ)",
        model="sonnet", upstream_model="claude-sonnet-4-5", status=200, attempts=2, latency_ms=812.4, first_byte_ms=95.2,
        input_tokens=1234, output_tokens=56, cached_tokens=0, reasoning_tokens=0, error=None,
    )
    return UsageRecord(**{**fields, **kw})


def test_log_line_says_what_was_asked_who_served_and_how_it_went():
    assert log_line(record(), "/v1/chat/completions") == (
        "cliproxy: openai-chat /v1/chat/completions sonnet as claude-sonnet-4-5 via claude claude-api-key[0] (…WXYZ): "
        "200 in 812ms (first byte 95ms), 2 attempts, tokens 1234 in / 56 out, client key-2"
    )


def test_log_line_of_a_failure_without_credential_or_tokens():
    line = log_line(
        record(credential="", provider="", upstream_model="", status=503, error="unavailable", attempts=0,
               first_byte_ms=None, input_tokens=None, output_tokens=None),
        "/v1/messages",
    )
    assert line == "cliproxy: openai-chat /v1/messages sonnet via no credential: 503 unavailable in 812ms, 0 attempts, client key-2"


def test_client_keys_are_labelled_by_position_never_by_value(monkeypatch):
    monkeypatch.delenv("CLI_PROXY_API_KEY", raising=False)
    assert key_label(None, parse_config("")) == NO_KEY
    assert key_label("anything", parse_config("")) == NO_KEY
    config = parse_config("api-keys: [first-secret, second-secret, first-secret]")
    assert key_label("second-secret", config) == "key-2"
    assert key_label("first-secret", config) == "key-1"
    monkeypatch.setenv("CLI_PROXY_API_KEY", "env-secret")
    config = parse_config("api-keys: [first-secret]")
    assert key_label("env-secret", config) == "env-key"
    assert key_label("first-secret", config) == "key-1"
