"""What a request leaves behind once it is over: the annotation mitmweb and saved flows show,
the header naming its credential, and its usage record. Never a secret: credential labels only.
"""

from __future__ import annotations

import time

from mitmproxy import http

from addons.common import request_line
from addons.exchange import INTERCEPTED, Exchange
from addons.upstream_client import decoded
from auth import providers
from routing.usage import UsageRecord
from translators.canonical import Usage
from translators.usage import sane, usage_from_body

ANNOTATION = "cliproxy"
CREDENTIAL_HEADER = "x-cliproxy-credential"
# The error class of the proxy's own answers, by their error code.
_LOCAL_ERRORS = {
    "model_cooldown": "rate_limited",
    "upstream_unreachable": "unreachable",
    "credentials_unavailable": "unavailable",
    "model_not_found": "unknown_model",
}


def client_side(flow: http.HTTPFlow) -> bool:
    """The flow ended because its client left."""
    return flow.error is not None and flow.error.msg.startswith("Client disconnected")


def annotate(flow: http.HTTPFlow, ex: Exchange) -> None:
    """What mitmweb and saved flows show of the request: who served it, how, after which tries."""
    leg = ex.leg
    if leg is None:
        return
    route, cred = leg.route, leg.route.credential
    attempts = [{"credential": a.credential, "outcome": a.outcome, "ms": round(a.ms, 1)} for a in ex.attempts]
    line = request_line(ex.client)
    info = {
        "client_request": line,
        "upstream_url": leg.target.url,
        "provider": cred.service or cred.provider,
        "credential": cred.label,
        "model": ex.client.model,
        "upstream_model": route.model,
        "attempts": len(ex.attempts),
        "attempt_log": attempts,
        "translation": leg.description,
    }
    if ex.cut:
        info["cut"] = ex.cut
    flow.metadata[ANNOTATION] = info
    # mitmweb's flow list shows the marker of the provider that answered.
    flow.marked = providers.of(cred).marker
    tries = ", ".join(f"{a.credential} {a.outcome} {a.ms:.0f}ms" for a in ex.attempts)
    flow.comment = (
        f"{line} | cliproxy: {info['provider']} via {cred.label}; model {ex.client.model}"
        + (f" -> {route.model}" if route.model != ex.client.model else "")
        + f"; attempts: {tries or 'none'}; {info['translation']}"
    )


def name_credential(response: http.Response, ex: Exchange, where: str) -> None:
    """`x-cliproxy-credential`, where the config (`credential-header`) asks for it."""
    if where == "off" or ex.leg is None or ex.local:
        return
    if where == "all" or ex.client_key != INTERCEPTED:
        response.headers[CREDENTIAL_HEADER] = ex.leg.route.credential.label


def usage_record(flow: http.HTTPFlow, ex: Exchange) -> UsageRecord:
    """The request's row in the usage store (and its log line), once it is over."""
    now = time.time()
    begun = flow.request.timestamp_start
    leg = ex.leg
    cred = leg.route.credential if leg is not None else None
    response = flow.response
    if response is not None:
        status = response.status_code
    else:
        status = 499 if client_side(flow) else 502
    usage = _stream_usage(ex) if response is not None and response.stream else _whole_usage(ex)
    client = ex.client
    return UsageRecord(
        time=begun,
        client_key=ex.client_key,
        client_api="code-assist" if client.endpoint.code_assist else client.endpoint.format.value,
        provider=(cred.service or cred.provider) if cred is not None else "",
        credential=cred.label if cred is not None else "",
        model=client.model,
        upstream_model=leg.route.model if leg is not None else "",
        status=status,
        attempts=len(ex.attempts),
        latency_ms=(now - begun) * 1000,
        first_byte_ms=None if ex.first_byte is None else (ex.first_byte - begun) * 1000,
        input_tokens=None if usage is None else usage.input_tokens,
        output_tokens=None if usage is None else usage.output_tokens,
        cached_tokens=None if usage is None else usage.cached_tokens,
        reasoning_tokens=None if usage is None else usage.reasoning_tokens,
        error=_error_class(flow, ex, status),
    )


def _whole_usage(ex: Exchange) -> Usage | None:
    if ex.whole is None:
        return None
    fmt, body, content_encoding = ex.whole
    if content_encoding:
        body = decoded(body, content_encoding) or b""
    return usage_from_body(fmt, body)


def _stream_usage(ex: Exchange) -> Usage | None:
    if ex.scan is not None:
        return ex.scan.usage()
    return sane(getattr(ex.watch, "usage", None))


def _error_class(flow: http.HTTPFlow, ex: Exchange, status: int) -> str | None:
    if flow.error is not None:
        return "client_closed" if client_side(flow) else "proxy_error"
    if ex.cut is not None:
        return "cut_off"
    if getattr(ex.watch, "error", None) is not None:
        return "stream_error"  # the upstream's own error event, mid-stream
    if status < 400:
        return None
    if ex.local:
        if ex.code in _LOCAL_ERRORS:
            return _LOCAL_ERRORS[ex.code]
        return "bad_request" if status == 400 else "internal" if status == 500 else f"proxy_{status}"
    if status == 429:
        return "rate_limited"
    return "upstream_4xx" if status < 500 else "upstream_5xx"
