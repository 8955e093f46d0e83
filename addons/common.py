"""Answering a flow from the proxy itself."""

from __future__ import annotations

from mitmproxy import http

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
