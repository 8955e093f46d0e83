"""Upstream model listings: which endpoint lists a credential's models, and how to read it.

Pure: no I/O here. `addons/listings.py` sends the requests these functions describe and keeps
the results; the router serves them (routing/router.py). Every fact about a vendor's listing
endpoint is in `LISTERS`, one row per kind of credential, so that it can move into per-provider
modules as one piece.

Kinds of credential with no row keep their built-in model list (routing/router.py
`_DEFAULT_LISTING`, auth/providers.py `DEFAULT_LISTING`): Gemini CLI's Code Assist has no model
listing call (the CLI ships its model names), and the listings of Vertex (Model Garden, v1beta1
only), Qwen, iFlow, Kimi and xAI are not confirmed by their official clients.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auth import providers
from auth.credential import Credential
from auth.providers import redirect
from routing import upstream
from routing.names import model_problem

ANTHROPIC_VERSION = "2023-06-01"
# The Codex backend lists only the models a client at least this recent may use (codex-rs
# ModelsClient sends its own version the same way).
CODEX_CLIENT_VERSION = "0.99.0"
# A listing longer than this is cut (and one of more pages than this is an upstream in a loop).
MAX_MODELS = 5000
MAX_PAGES = 50


class ListingError(ValueError):
    """A listing answer this proxy cannot read. The message never holds a secret."""


@dataclass(frozen=True, slots=True)
class ListingRequest:
    method: str
    url: str  # absolute, `upstream-overrides` applied
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Page:
    ids: list[str]
    # The query parameters that ask for the next page, or None when this was the last one.
    next: dict[str, str] | None = None


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise ListingError("the answer is not JSON") from None
    if not isinstance(body, dict):
        raise ListingError("the answer is not a JSON object")
    return body


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ListingError(f"`{key}` is not a list")
    return items


def _ids(items: list[Any], field: str) -> list[str]:
    return [item[field] for item in items if isinstance(item, dict) and isinstance(item.get(field), str)]


def decode_openai(raw: bytes) -> Page:
    """OpenAI `GET /v1/models` (and OpenAI-compatible services): `{object: list, data: [{id}]}`."""
    return Page(_ids(_list(_object(raw), "data"), "id"))


def decode_anthropic(raw: bytes) -> Page:
    """Anthropic `GET /v1/models`: `{data: [{type, id, display_name, created_at, lifecycle?}],
    has_more, first_id, last_id}`; the next page is `after_id=last_id`. Retired models (listed
    only when asked for) are not served."""
    body = _object(raw)
    items = [i for i in _list(body, "data") if not (isinstance(i, dict) and i.get("lifecycle") == "retired")]
    last = body.get("last_id")
    more = body.get("has_more") is True and isinstance(last, str) and last
    return Page(_ids(items, "id"), {"after_id": last} if more else None)


def decode_gemini(raw: bytes) -> Page:
    """Gemini `GET /v1beta/models`: `{models: [{name: "models/x", supportedGenerationMethods}],
    nextPageToken}`. Only models that generate content are served (not embedders, not Imagen)."""
    body = _object(raw)
    ids = []
    for item in _list(body, "models"):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        methods = item.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" in methods:
            ids.append(item["name"].removeprefix("models/"))
    token = body.get("nextPageToken")
    return Page(ids, {"pageToken": token} if isinstance(token, str) and token else None)


def decode_codex(raw: bytes) -> Page:
    """The ChatGPT Codex backend's `GET {base}/models?client_version=`: `{models: [{slug, ...}]}`
    (codex-rs `ModelsResponse`)."""
    return Page(_ids(_list(_object(raw), "models"), "slug"))


def decode_antigravity(raw: bytes) -> Page:
    """Antigravity's `POST /v1internal:fetchAvailableModels`: `{models: {id: {...}}}` (as
    CLIProxyAPI's FetchAntigravityModels reads it); `chat_*` ids are internal, never served."""
    models = _object(raw).get("models")
    if models is None:
        return Page([])
    if not isinstance(models, dict):
        raise ListingError("`models` is not an object")
    return Page([k for k in models if isinstance(k, str) and not k.startswith("chat_")])


@dataclass(frozen=True, slots=True)
class Lister:
    method: str
    path: str  # after the credential's base URL
    decode: Callable[[bytes], Page]
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    headers: Callable[[Credential], dict[str, str]] = lambda cred: {}


def _bearer(cred: Credential) -> dict[str, str]:
    return {"authorization": f"Bearer {cred.secret}"} if cred.secret else {}


def _anthropic_key(cred: Credential) -> dict[str, str]:
    return {"x-api-key": cred.secret, "anthropic-version": ANTHROPIC_VERSION}


def _claude_login(cred: Credential) -> dict[str, str]:
    return {**_bearer(cred), "anthropic-version": ANTHROPIC_VERSION, "anthropic-beta": providers.CLAUDE_OAUTH_BETA}


def _gemini_key(cred: Credential) -> dict[str, str]:
    return {"x-goog-api-key": cred.secret}


def _codex_login(cred: Credential) -> dict[str, str]:
    headers = {**_bearer(cred), "originator": providers.CODEX_DEFAULT_HEADERS["originator"]}
    if cred.account_id:
        headers["chatgpt-account-id"] = cred.account_id
    return headers


def _antigravity(cred: Credential) -> dict[str, str]:
    return {**_bearer(cred), "user-agent": upstream.antigravity_user_agent(cred), "content-type": "application/json"}


# (credential kind, provider) -> how that upstream lists its models.
LISTERS: dict[tuple[str, str], Lister] = {
    ("api-key", "claude"): Lister("GET", "/v1/models", decode_anthropic, (("limit", "1000"),), headers=_anthropic_key),
    ("api-key", "gemini"): Lister("GET", "/v1beta/models", decode_gemini, (("pageSize", "1000"),), headers=_gemini_key),
    ("api-key", "codex"): Lister("GET", "/models", decode_openai, headers=_bearer),
    ("api-key", "openai-compatibility"): Lister("GET", "/models", decode_openai, headers=_bearer),
    ("oauth", "claude"): Lister("GET", "/v1/models", decode_anthropic, (("limit", "1000"),), headers=_claude_login),
    ("oauth", "codex"): Lister(
        "GET", "/models", decode_codex, (("client_version", CODEX_CLIENT_VERSION),), headers=_codex_login
    ),
    ("oauth", "antigravity"): Lister(
        "POST", "/v1internal:fetchAvailableModels", decode_antigravity, body=b"{}", headers=_antigravity
    ),
}


def lister(cred: Credential) -> Lister | None:
    """How `cred`'s upstream lists models, or None when it is not asked (its config names its
    models, or its kind has no listing)."""
    if cred.models:
        return None
    return LISTERS.get((cred.kind, cred.provider))


def listing_request(
    cred: Credential, spec: Lister, overrides: Mapping[str, str], page: Mapping[str, str] | None = None
) -> ListingRequest:
    """The request for one page of `cred`'s listing, sent where its model calls go."""
    url = upstream.base_url(cred) + spec.path
    query = [*spec.query, *(page or {}).items()]
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = spec.headers(cred)
    # The config's fixed headers ride along, as on model calls; `$name` copies a client's header,
    # and a listing has no client.
    headers.update({k: v for k, v in cred.headers.items() if not v.startswith("$")})
    return ListingRequest(spec.method, redirect(url, overrides), headers, spec.body)


def usable_ids(ids: list[str]) -> tuple[str, ...]:
    """The listed ids a client could ask for, deduplicated, in the upstream's order."""
    seen: dict[str, None] = {}
    for model in ids:
        if model_problem(model) is None:
            seen.setdefault(model, None)
        if len(seen) >= MAX_MODELS:
            break
    return tuple(seen)
