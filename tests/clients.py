"""What the end-to-end tests ask the proxy through the official SDKs, defined once."""

from __future__ import annotations

from typing import Any

import anthropic


def ask_claude(
    target: Any,
    model: str = "claude-test-1",
    *,
    api_key: str = "unused",
    max_tokens: int = 8,
    timeout: float | None = None,
) -> anthropic.types.Message:
    """One "hi" on the Messages API: `target` is an Anthropic client, or a proxy (its local API,
    with `api_key` as the client key)."""
    if isinstance(target, anthropic.Anthropic):
        client = target
    else:
        options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        client = anthropic.Anthropic(api_key=api_key, base_url=target.base_url, max_retries=0, **options)
    return client.messages.create(model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}])
