"""Model listings in the shape of each API's `models` endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

# A fixed timestamp: listings must not change from one call to the next.
_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class ListedModel:
    id: str
    owned_by: str  # the first provider (or openai-compatibility service) serving it
    # Every provider serving it, in config order. Each shape carries them where the vendors'
    # SDKs keep them: an extra `providers` key (OpenAI, Anthropic), the description (Gemini,
    # whose SDK drops keys it does not know).
    providers: tuple[str, ...] = ()

    @property
    def served_by(self) -> list[str]:
        return list(self.providers or (self.owned_by,))


def openai_models(models: Iterable[ListedModel]) -> bytes:
    data = [
        {"id": m.id, "object": "model", "created": _CREATED, "owned_by": m.owned_by, "providers": m.served_by}
        for m in models
    ]
    return json.dumps({"object": "list", "data": data}).encode()


def anthropic_models(models: Iterable[ListedModel]) -> bytes:
    data = [
        {
            "type": "model",
            "id": m.id,
            "display_name": m.id,
            "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": "active",
            "providers": m.served_by,
        }
        for m in models
    ]
    return json.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    ).encode()


def gemini_model(m: ListedModel) -> dict:
    return {
        "name": f"models/{m.id}",
        "version": "001",
        "displayName": m.id,
        "description": f"{m.id}, served by cliproxy ({', '.join(m.served_by)})",
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }


def gemini_models(models: Iterable[ListedModel]) -> bytes:
    return json.dumps({"models": [gemini_model(m) for m in models]}).encode()
