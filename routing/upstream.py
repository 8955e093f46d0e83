"""Where a routed request goes and which headers carry the pool's credential there."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from auth.credential import Credential
from routing.endpoints import Endpoint, Kind
from translators.formats import Format

DEFAULT_BASE_URLS = {
    "claude": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "codex": "https://api.openai.com/v1",
}

# Headers through which a client authenticates to the proxy (or to a vendor, when intercepted):
# they never travel upstream.
CLIENT_AUTH_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
_CLIENT_AUTH_QUERY = ("key", "auth_token")
_HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
    }
)


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """What the client asked for, kept unchanged so that every attempt starts from it."""

    endpoint: Endpoint
    model: str
    stream: bool
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-cased names; for `$name` header values in the config
    raw_headers: tuple[tuple[str, str], ...]  # as sent, for attempts the proxy sends itself
    body: bytes
    parsed: dict | None


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    url: str
    auth_headers: dict[str, str]
    extra_headers: dict[str, str]


def redirect(url: str, overrides: Mapping[str, str]) -> str:
    """Apply `upstream-overrides` (vendor host -> base URL) to an absolute URL."""
    if not overrides:
        return url
    parts = urllib.parse.urlsplit(url)
    base = overrides.get((parts.hostname or "").lower())
    if base is None:
        return url
    target = urllib.parse.urlsplit(base)
    path = target.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((target.scheme, target.netloc, path, parts.query, ""))


def _upstream_path(
    client: ClientRequest, model: str, upstream: Format
) -> tuple[str, list[tuple[str, str]]]:
    """Path and query on the upstream. Same format: the client's own, only the model and its
    credential swapped. Another format: that format's endpoint for the same kind of call."""
    ep = client.endpoint
    counting = ep.kind is Kind.COUNT_TOKENS
    if upstream is ep.format:
        query = [(k, v) for k, v in client.query if k not in _CLIENT_AUTH_QUERY]
        version, action = ep.version, ep.action
    else:
        query, version = [], "v1beta"
        action = "countTokens" if counting else "generateContent"
        if client.stream and not counting and upstream is Format.GEMINI:
            action, query = "streamGenerateContent", [("alt", "sse")]
    if upstream is Format.GEMINI:
        return f"/{version}/models/{model}:{action}", query
    if upstream is Format.ANTHROPIC:
        return ("/v1/messages/count_tokens" if counting else "/v1/messages"), query
    if upstream is Format.OPENAI_RESPONSES:
        return "/responses", query
    return "/chat/completions", query


def _auth_headers(cred: Credential) -> dict[str, str]:
    if not cred.secret:
        return {}
    if cred.provider == "claude":
        return {"x-api-key": cred.secret}
    if cred.provider == "gemini":
        return {"x-goog-api-key": cred.secret}
    return {"authorization": f"Bearer {cred.secret}"}


def _extra_headers(cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
    # CLIProxyAPI: a configured value "$name" copies the client's header `name`.
    out = {}
    for name, value in cred.headers.items():
        if value.startswith("$"):
            copied = client_headers.get(value[1:].lower())
            if copied is None:
                continue
            value = copied
        out[name] = value
    return out


def target(
    cred: Credential,
    client: ClientRequest,
    model: str,
    upstream: Format,
    overrides: Mapping[str, str],
) -> UpstreamTarget:
    base = cred.base_url or DEFAULT_BASE_URLS.get(cred.provider, "")
    path, query = _upstream_path(client, model, upstream)
    url = base + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return UpstreamTarget(
        redirect(url, overrides), _auth_headers(cred), _extra_headers(cred, client.headers)
    )


def header_list(
    client_headers: Sequence[tuple[str, str]],
    t: UpstreamTarget,
    translation_headers: Mapping[str, str],
    body_length: int,
) -> list[tuple[str, str]]:
    """The full header list for an attempt the proxy sends itself (a retry through httpx)."""
    replaced = {*CLIENT_AUTH_HEADERS, *(h.lower() for h in (*t.extra_headers, *translation_headers))}
    # RFC 9110 7.6.1: hop-by-hop headers, and those the Connection header names, stay here.
    named = {
        token.strip().lower()
        for name, value in client_headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    skip = {*_HOP_BY_HOP, *named, *replaced}
    headers = [(k, v) for k, v in client_headers if k.lower() not in skip]
    headers.extend(translation_headers.items())
    headers.extend(t.auth_headers.items())
    headers.extend(t.extra_headers.items())
    headers.append(("content-length", str(body_length)))
    return headers
