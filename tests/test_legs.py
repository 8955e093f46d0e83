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
