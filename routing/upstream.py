"""Where a routed request goes and which headers carry the pool's credential there."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from auth import providers
from auth.credential import Credential
from auth.providers import redirect
from routing.endpoints import Endpoint, Kind
from routing.names import segment
from translators.formats import Format

# Headers through which a client authenticates to the proxy (or to a vendor, when intercepted):
# they never travel upstream.
CLIENT_AUTH_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
# The query parameters a client may authenticate with (routing.endpoints.client_key): none is
# forwarded (see _FORWARDED_QUERY), and addons.common.hide_client_auth masks them in kept flows.
CLIENT_AUTH_QUERY = ("key", "auth_token")
# The query parameters a same-format call keeps upstream: those its API defines for model calls
# (Gemini's `alt=sse`, Claude Code's `beta=true`, Azure-style `api-version`). Anything else a
# client adds (`key`, `access_token`, `quotaUser`...) stays here.
_FORWARDED_QUERY = {
    Format.GEMINI: frozenset({"alt"}),
    Format.ANTHROPIC: frozenset({"beta"}),
    Format.OPENAI_CHAT: frozenset({"api-version"}),
    Format.OPENAI_RESPONSES: frozenset({"api-version"}),
}
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


def code_assist(cred: Credential) -> bool:
    """The credential's upstream speaks Gemini inside the Code Assist envelope."""
    return cred.kind == "oauth" and providers.of(cred).code_assist


def forced_stream(cred: Credential) -> bool:
    """The upstream answers only as a stream, whatever the client asked."""
    return providers.of(cred).forced_stream


def base_url(cred: Credential) -> str:
    return providers.of(cred).upstream_base(cred)


def _gemini_action(client: ClientRequest, counting: bool) -> tuple[str, list[tuple[str, str]]]:
    if counting:
        return "countTokens", []
    if client.stream:
        return "streamGenerateContent", [("alt", "sse")]
    return "generateContent", []


def _upstream_path(
    client: ClientRequest, model: str, upstream: Format, cred: Credential
) -> tuple[str, list[tuple[str, str]]]:
    """Path and query on the upstream. Same format: the client's own, only the model and its
    credential swapped. Another format: that format's endpoint for the same kind of call."""
    ep = client.endpoint
    counting = ep.kind is Kind.COUNT_TOKENS
    if code_assist(cred):
        if ep.code_assist:  # a Code Assist client: its own call, only the account changes
            return f"/v1internal:{ep.action}", _forwarded_query(client, Format.GEMINI)
        # Always SSE when streaming: the envelope is unwrapped event by event.
        action, query = _gemini_action(client, counting)
        return f"/v1internal:{action}", query
    if upstream is ep.format:
        query = _forwarded_query(client, upstream)
        version, action = ep.version, ep.action
    else:
        query, version = [], "v1beta"
        action = "countTokens" if counting else "generateContent"
        if client.stream and not counting and upstream is Format.GEMINI:
            action, query = "streamGenerateContent", [("alt", "sse")]
    if upstream is Format.GEMINI:
        # `version` and `action` come from endpoints' fixed sets; the model (checked by
        # routing.names, yet still the client's) and the token file's ids are one segment each.
        where = "".join("/" + segment(part) for part in providers.of(cred).gemini_resource(cred, version))
        return f"{where}/{segment(model)}:{action}", query
    if upstream is Format.ANTHROPIC:
        return ("/v1/messages/count_tokens" if counting else "/v1/messages"), query
    if upstream is Format.OPENAI_RESPONSES:
        return "/responses", query
    return "/chat/completions", query


def _forwarded_query(client: ClientRequest, fmt: Format) -> list[tuple[str, str]]:
    allowed = _FORWARDED_QUERY.get(fmt, frozenset())
    return [(k, v) for k, v in client.query if k in allowed]


def _extra_headers(cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
    # CLIProxyAPI: a configured value "$name" copies the client's header `name`.
    out = providers.of(cred).headers(cred, client_headers)
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
    path, query = _upstream_path(client, model, upstream, cred)
    url = base_url(cred) + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return UpstreamTarget(
        redirect(url, overrides), providers.of(cred).auth_headers(cred), _extra_headers(cred, client.headers)
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
    headers = [
        (k, v)
        for k, v in client_headers
        # `Connection: keep-alive` is what the upstream connection does anyway: kept as the
        # client sent it, so that an intercepted CLI's header set reaches its vendor unchanged.
        if k.lower() not in skip or (k.lower() == "connection" and v.lower() == "keep-alive")
    ]
    headers.extend(translation_headers.items())
    headers.extend(t.auth_headers.items())
    headers.extend(t.extra_headers.items())
    headers.append(("content-length", str(body_length)))
    return headers


def upstream_proxy(cred: Credential, default: str) -> str | None:
    """The http(s) proxy `cred`'s upstream traffic goes through, or None for a direct
    connection: the credential's own `proxy-url`, else the config's; "direct" and "none" bypass.
    Raises ValueError for a proxy this proxy cannot speak (socks)."""
    value = (cred.proxy_url or default).strip()
    if value.lower() in ("", "direct", "none"):
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"{cred.label}: proxy_url must be an http:// or https:// proxy (or direct/none); "
            f"{value.split('://', 1)[0]} proxies are not supported"
        )
    return value
