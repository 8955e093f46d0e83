"""What the listener and the interceptor share: reading a client's call, answering a flow."""

from __future__ import annotations

import json
import urllib.parse

from mitmproxy import http

from routing.endpoints import Endpoint
from routing.upstream import CLIENT_AUTH_HEADERS, CLIENT_AUTH_QUERY, ClientRequest
from translators.code_assist import envelope_model
from translators.errors import error_body
from translators.formats import Format

_JSON = {"content-type": "application/json"}
_CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
}


def reply(
    flow: http.HTTPFlow,
    status: int,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    cors: bool = False,
) -> None:
    all_headers = {**_JSON, **(headers or {})}
    if cors:
        all_headers.update(_CORS)
    flow.response = http.Response.make(status, body, all_headers)


def reply_error(
    flow: http.HTTPFlow,
    fmt: Format,
    status: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
) -> None:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    reply(flow, status, error_body(fmt, status, message, code=code, retry_after=retry_after), headers=headers)


def hide_client_auth(flow: http.HTTPFlow) -> None:
    """Mask the key a client authenticated with, in the flow mitmproxy keeps (mitmweb, saved
    flows, the console dump), once nothing needs it any more."""
    headers = flow.request.headers
    for name in CLIENT_AUTH_HEADERS:
        if value := headers.get(name):
            headers[name] = mask(value)
    query = flow.request.query
    if any(name in query for name in CLIENT_AUTH_QUERY):
        for name in CLIENT_AUTH_QUERY:
            if name in query:
                query[name] = "…"


def request_line(client: ClientRequest) -> str:
    """The client's request line as it sent it (method, path, query), its key masked."""
    if not client.query:
        return f"{client.method} {client.path}"
    query = urllib.parse.urlencode(
        [(k, "…" if k in CLIENT_AUTH_QUERY else v) for k, v in client.query], safe="/:,…"
    )
    return f"{client.method} {client.path}?{query}"


def mask(value: str) -> str:
    return value[:7] + "…" if value.lower().startswith("bearer ") else "…"


def client_request(
    flow: http.HTTPFlow, endpoint: Endpoint, path: str, headers: dict[str, str]
) -> ClientRequest | None:
    """The client's call, or None after answering it with a 400 in its own format."""
    req = flow.request
    body = req.raw_content or b""
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError) as e:
        reply_error(flow, endpoint.format, 400, f"the request body is not valid JSON: {e}")
        return None
    if not isinstance(parsed, dict):
        reply_error(flow, endpoint.format, 400, "the request body must be a JSON object")
        return None
    model = endpoint.model or (envelope_model(parsed) if endpoint.code_assist else parsed.get("model"))
    if not isinstance(model, str) or not model:
        reply_error(flow, endpoint.format, 400, 'the request names no model: set "model"')
        return None
    return ClientRequest(
        endpoint=endpoint,
        model=model,
        stream=endpoint.streams_by_path or parsed.get("stream") is True,
        method=req.method,
        path=path,
        query=tuple(req.query.items(multi=True)),
        headers=headers,
        raw_headers=tuple(req.headers.items(multi=True)),
        body=body,
        parsed=parsed,
    )
