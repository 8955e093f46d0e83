"""Model listings: the request a provider's upstream answers with its model ids, and the
listing shapes several providers share (OpenAI, Anthropic, Gemini). Pure: addons/listings.py
sends the requests and routing/listings.py builds them; a provider names its `Lister`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ANTHROPIC_VERSION = "2023-06-01"


class ListingError(ValueError):
    """A listing answer this proxy cannot read. The message never holds a secret."""


@dataclass(frozen=True, slots=True)
class Page:
    ids: list[str]
    # The query parameters that ask for the next page, or None when this was the last one.
    next: dict[str, str] | None = None


def object_of(raw: bytes) -> dict[str, Any]:
    """The answer's JSON object, or ListingError."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ListingError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise ListingError("the answer is not a JSON object")
    return body


def list_at(body: Mapping[str, Any], key: str) -> list[Any]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ListingError(f"`{key}` is not a list")
    return items


def ids_at(items: list[Any], field: str) -> list[str]:
    return [item[field] for item in items if isinstance(item, dict) and isinstance(item.get(field), str)]


def decode_openai(raw: bytes) -> Page:
    """OpenAI `GET /v1/models` (and OpenAI-compatible services): `{object: list, data: [{id}]}`."""
    return Page(ids_at(list_at(object_of(raw), "data"), "id"))


def decode_anthropic(raw: bytes) -> Page:
    """Anthropic `GET /v1/models`: `{data: [{type, id, display_name, created_at, lifecycle?}],
    has_more, first_id, last_id}`; the next page is `after_id=last_id`. Retired models (listed
    only when asked for) are not served."""
    body = object_of(raw)
    items = [i for i in list_at(body, "data") if not (isinstance(i, dict) and i.get("lifecycle") == "retired")]
    last = body.get("last_id")
    more = body.get("has_more") is True and isinstance(last, str) and last
    return Page(ids_at(items, "id"), {"after_id": last} if more else None)


def decode_gemini(raw: bytes) -> Page:
    """Gemini `GET /v1beta/models`: `{models: [{name: "models/x", supportedGenerationMethods}],
    nextPageToken}`. Only models that generate content are served (not embedders, not Imagen)."""
    body = object_of(raw)
    ids = []
    for item in list_at(body, "models"):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        methods = item.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" in methods:
            ids.append(item["name"].removeprefix("models/"))
    token = body.get("nextPageToken")
    return Page(ids, {"pageToken": token} if isinstance(token, str) and token else None)


@dataclass(frozen=True, slots=True)
class Lister:
    """How one upstream lists its models: the request after the credential's base URL (its
    auth headers added by the provider), and how to read a page of the answer."""

    method: str
    path: str
    decode: Callable[[bytes], Page]
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


OPENAI = Lister("GET", "/models", decode_openai)
ANTHROPIC = Lister("GET", "/v1/models", decode_anthropic, (("limit", "1000"),), headers=(("anthropic-version", ANTHROPIC_VERSION),))
GEMINI = Lister("GET", "/v1beta/models", decode_gemini, (("pageSize", "1000"),))
