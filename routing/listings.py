"""Upstream model listings: the request for one page of a credential's listing, and the ids
from it a client may ask for.

Pure: no I/O here. `addons/listings.py` sends the requests and keeps the results; the router
serves them (routing/router.py). What each vendor's listing endpoint is and how its answer reads
is its provider's (`Provider.lister`, auth/providers/listing.py). Providers without a lister
(Gemini CLI's Code Assist has no listing call; Vertex, Qwen, iFlow, Kimi and xAI have none their
official clients use) keep their built-in model list.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from auth import providers
from auth.credential import Credential
from auth.providers import redirect
from auth.providers.listing import Lister
from routing import upstream
from routing.names import model_problem

# A listing longer than this is cut (and one of more pages than this is an upstream in a loop).
MAX_MODELS = 5000
MAX_PAGES = 50


@dataclass(frozen=True, slots=True)
class ListingRequest:
    method: str
    url: str  # absolute, `upstream-overrides` applied
    headers: dict[str, str]
    body: bytes = b""


def lister(cred: Credential) -> Lister | None:
    """How `cred`'s upstream lists models, or None when it is not asked (its config names its
    models, or its kind has no listing)."""
    if cred.models:
        return None
    return providers.of(cred).lister


def listing_request(
    cred: Credential, spec: Lister, overrides: Mapping[str, str], page: Mapping[str, str] | None = None
) -> ListingRequest:
    """The request for one page of `cred`'s listing, sent where its model calls go."""
    url = upstream.base_url(cred) + spec.path
    query = [*spec.query, *(page or {}).items()]
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = providers.of(cred).listing_headers(cred)
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
