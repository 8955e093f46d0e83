"""An `openai-compatibility` service of config.yaml: Chat Completions at its own base URL."""

from __future__ import annotations

from auth.providers import listing
from auth.providers.base import Provider

PROVIDER = Provider(
    "openai-compatibility",
    "api-key",
    wire="openai-chat",
    # Without a `models` list, any id (OpenRouter's `org/model` included); none listed.
    families=("*",),
    listing=(),
    lister=listing.OPENAI,
    marker=":white_circle:",
)
