"""Where a routed request goes and which headers carry the pool's credential there."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from auth.credential import Credential
from routing.endpoints import Endpoint
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


def _upstream_path(cred: Credential, client: ClientRequest, model: str) -> str:
    ep = client.endpoint
    if ep.format is Format.GEMINI:
        return f"/{ep.version}/models/{model}:{ep.action}"
    if ep.format is Format.ANTHROPIC:
        return client.path
    if ep.format is Format.OPENAI_RESPONSES:
        return "/responses"
    return "/chat/completions"


def _auth_headers(cred: Credential) -> dict[str, str]:
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
    cred: Credential, client: ClientRequest, model: str, overrides: Mapping[str, str]
) -> UpstreamTarget:
    base = cred.base_url or DEFAULT_BASE_URLS.get(cred.provider, "")
    query = [(k, v) for k, v in client.query if k not in _CLIENT_AUTH_QUERY]
    url = base + _upstream_path(cred, client, model)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return UpstreamTarget(
        redirect(url, overrides), _auth_headers(cred), _extra_headers(cred, client.headers)
    )


def header_list(
    client_headers: Sequence[tuple[str, str]], t: UpstreamTarget, body_length: int
) -> list[tuple[str, str]]:
    """The full header list for an attempt the proxy sends itself (a retry through httpx)."""
    replaced = {*CLIENT_AUTH_HEADERS, *(h.lower() for h in t.extra_headers)}
    skip = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", *replaced}
    headers = [(k, v) for k, v in client_headers if k.lower() not in skip]
    headers.extend(t.auth_headers.items())
    headers.extend(t.extra_headers.items())
    headers.append(("content-length", str(body_length)))
    return headers
