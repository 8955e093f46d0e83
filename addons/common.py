"""What the listener and the interceptor share: reading a client's call, answering a flow."""

from __future__ import annotations

import json
import urllib.parse

from mitmproxy import http

from routing.endpoints import Endpoint, Kind
from routing.names import model_problem
from routing.upstream import CLIENT_AUTH_HEADERS, CLIENT_AUTH_QUERY, ClientRequest
from translators.code_assist import envelope_model
from translators.errors import error_body
from translators.fields import FieldError, json_type, shown
from translators.formats import Format
from translators.shape import check_request
from translators.translate import NESTED_TOO_DEEPLY

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
    req = flow.request
    fields = req.headers.fields
    # The raw fields, not `Headers.get`: this runs on every request.
    if any(name.lower() in _AUTH_HEADER_NAMES for name, _ in fields):
        req.headers.fields = tuple(
            (name, _masked(value)) if name.lower() in _AUTH_HEADER_NAMES else (name, value) for name, value in fields
        )
    if b"?" in req.data.path:
        query = req.query
        if any(name in query for name in CLIENT_AUTH_QUERY):
            for name in CLIENT_AUTH_QUERY:
                if name in query:
                    query[name] = "…"


_AUTH_HEADER_NAMES = frozenset(name.encode() for name in CLIENT_AUTH_HEADERS)
_ELLIPSIS = "…".encode()


def _masked(value: bytes) -> bytes:
    return value[:7] + _ELLIPSIS if value[:7].lower() == b"bearer " else _ELLIPSIS


def read_headers(headers: http.Headers) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """A request's headers in one pass: by lower-cased name (repeated names joined, as
    mitmproxy's `Headers` does), and every field as sent."""
    raw = tuple(
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in headers.fields
    )
    lowered: dict[str, str] = {}
    for name, value in raw:
        name = name.lower()
        lowered[name] = f"{lowered[name]}, {value}" if name in lowered else value
    return lowered, raw


def query_of(req: http.Request):
    """The request's query (parsed only when there is one)."""
    return req.query if b"?" in req.data.path else _NO_QUERY


_NO_QUERY: dict[str, str] = {}


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
    flow: http.HTTPFlow,
    endpoint: Endpoint,
    path: str,
    headers: dict[str, str],
    raw_headers: tuple[tuple[str, str], ...],
) -> ClientRequest | None:
    """The client's call, or None after answering it with a 400 in its own format.

    Checked here, for every call whether it is translated or passed through: the body is a
    JSON object, the model a possible model name, the conversation field of its type."""
    req = flow.request
    body = req.raw_content or b""
    fmt = endpoint.format
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError) as e:
        reply_error(flow, fmt, 400, f"the request body is not valid JSON: {e}")
        return None
    except RecursionError:
        reply_error(flow, fmt, 400, NESTED_TOO_DEEPLY)
        return None
    if not isinstance(parsed, dict):
        reply_error(flow, fmt, 400, "the request body must be a JSON object")
        return None
    declared = parsed.get("model")
    if declared is not None and not isinstance(declared, str):
        reply_error(flow, fmt, 400, f'"model" must be a string, not {json_type(declared)}')
        return None
    model = endpoint.model or (envelope_model(parsed) if endpoint.code_assist else declared)
    if not model:
        reply_error(flow, fmt, 400, 'the request names no model: set "model"')
        return None
    if problem := model_problem(model):
        reply_error(flow, fmt, 400, f"invalid model {shown(model, 80)}: {problem}")
        return None
    try:
        check_request(fmt, parsed, counting=endpoint.kind is Kind.COUNT_TOKENS, envelope=endpoint.code_assist)
    except FieldError as e:
        reply_error(flow, fmt, 400, f"invalid request: {e}")
        return None
    return ClientRequest(
        endpoint=endpoint,
        model=model,
        stream=endpoint.streams_by_path or parsed.get("stream") is True,
        method=req.method,
        path=path,
        query=tuple(req.query.items(multi=True)) if b"?" in req.data.path else (),
        headers=headers,
        raw_headers=raw_headers,
        body=body,
        parsed=parsed,
    )
