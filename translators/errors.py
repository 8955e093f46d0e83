"""Error bodies in each API's own shape, so that every SDK raises its own typed exception."""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import time
from collections.abc import Mapping

from translators.formats import Format

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    431: "INVALID_ARGUMENT",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(
    fmt: Format,
    status: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
) -> bytes:
    """The JSON body an upstream of format `fmt` would send for this error."""
    if fmt is Format.ANTHROPIC:
        err = {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}
        return json.dumps({"type": "error", "error": err}).encode()
    if fmt is Format.GEMINI:
        google: dict = {
            "code": status,
            "message": message,
            "status": _GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
        if retry_after is not None:
            google["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{max(0, round(retry_after))}s",
                }
            ]
        return json.dumps({"error": google}).encode()
    err = {
        "message": message,
        "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        "param": None,
        "code": code,
    }
    return json.dumps({"error": err}).encode()


def _finite(value: float) -> float | None:
    # float() accepts "nan" and "inf"; neither is a wait.
    return value if math.isfinite(value) and value >= 0 else None


def _seconds(duration: str) -> float | None:
    # Google's protobuf Duration in JSON: "30s", "1.5s"
    if duration.endswith("s"):
        try:
            return _finite(float(duration[:-1]))
        except ValueError:
            return None
    return None


def _http_date(value: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone, and HTTP dates are UTC
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def retry_hint(headers: Mapping[str, str], body: bytes) -> float | None:
    """Seconds the upstream asks us to wait before the next try, from any vendor's hint."""
    if value := headers.get("retry-after-ms"):
        try:
            if (ms := _finite(float(value))) is not None:
                return ms / 1000
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            if (seconds := _finite(float(value))) is not None:
                return seconds
        except ValueError:
            if (seconds := _http_date(value)) is not None:
                return seconds
    if not body or len(body) > 65536:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None
    # Codex usage limits
    resets = error.get("resets_in_seconds")
    if isinstance(resets, (int, float)) and not isinstance(resets, bool):
        return _finite(float(resets))
    # Gemini: google.rpc.RetryInfo in the error details
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict) or not isinstance(detail.get("@type"), str):
            continue
        if detail["@type"].endswith("google.rpc.RetryInfo") and isinstance(
            delay := detail.get("retryDelay"), str
        ):
            return _seconds(delay)
    return None
