"""routing/legs.py: what one attempt sends, for the parts not covered end to end."""

from __future__ import annotations

import json

from auth.credential import Credential
from routing.endpoints import match
from routing.legs import dropped_parameters, plan, remote_images
from routing.router import Route
from routing.upstream import ClientRequest

COMPAT = Credential(provider="openai-compatibility", source="compat", secret="k" * 20, base_url="http://x/v1")
GEMINI = Credential(provider="gemini", source="gemini", secret="g" * 20)


def call(path: str, body: dict) -> ClientRequest:
    raw = json.dumps(body).encode()
    return ClientRequest(match("POST", path, {}), body["model"], False, "POST", path, (), {}, (), raw, body)


def test_dropped_parameters_name_what_the_translation_lost():
    client = call(
        "/v1/messages",
        {"model": "m", "max_tokens": 10, "top_k": 5, "service_tier": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    leg = plan(client, Route(COMPAT, "m"), {})
    assert dropped_parameters(client, leg) == ["service_tier (not translated)", "top_k (no openai-chat equivalent)"]


def test_nothing_is_reported_for_a_pass_through():
    client = call("/v1/chat/completions", {"model": "m", "seed": 1, "messages": []})
    leg = plan(client, Route(COMPAT, "m"), {})
    assert leg.request is None and dropped_parameters(client, leg) == []


def test_only_gemini_needs_remote_images_fetched():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [image]}]}
    to_gemini = plan(call("/v1/chat/completions", body), Route(GEMINI, "gemini-2.5-flash"), {})
    assert [i.url for i in remote_images(to_gemini)] == ["https://example.com/a.png"]
    claude = Credential(provider="claude", source="claude", secret="c" * 20)
    body["model"] = "claude-x"
    to_claude = plan(call("/v1/chat/completions", body), Route(claude, "claude-x"), {})
    assert remote_images(to_claude) == []  # Anthropic fetches URLs itself


def test_proxy_url_of_a_token_file():
    from pathlib import Path

    import pytest

    from auth.store import credential_from_token
    from auth.tokens import TokenFile
    from routing.upstream import upstream_proxy

    base = {"type": "claude", "access_token": "a" * 20, "refresh_token": "r" * 20, "email": "x@y"}
    cred = credential_from_token(TokenFile(Path("/tmp/claude-x@y.json"), {**base, "proxy_url": "http://10.1.2.3:3128"}))
    assert upstream_proxy(cred, "") == "http://10.1.2.3:3128"
    direct = credential_from_token(TokenFile(Path("/tmp/claude-x@y.json"), {**base, "proxy_url": "direct"}))
    assert upstream_proxy(direct, "http://corporate:8080") is None
    plain = credential_from_token(TokenFile(Path("/tmp/claude-x@y.json"), base))
    assert upstream_proxy(plain, "http://corporate:8080") == "http://corporate:8080"
    socks = credential_from_token(TokenFile(Path("/tmp/claude-x@y.json"), {**base, "proxy_url": "socks5://h:1"}))
    with pytest.raises(ValueError, match="socks5 proxies are not supported"):
        upstream_proxy(socks, "")


def test_a_credential_whose_proxy_cannot_be_honoured_is_left_out():
    """Fail closed: a socks proxy (valid in CLIProxyAPI configs) must not mean going direct."""
    from routing.config import parse_config
    from routing.runtime import Runtime

    runtime = Runtime(parse_config(
        "claude-api-key:\n  - api-key: sk-ant-aaaaaaaaaaaa1\n    proxy-url: socks5://p:1080\n"
        "  - api-key: sk-ant-bbbbbbbbbbbb2\n"
    ))
    assert [c.source for c in runtime.router.credentials] == ["claude-api-key[1]"]
