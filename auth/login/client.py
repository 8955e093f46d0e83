"""HTTP for login flows: every URL through `upstream-overrides`, errors that never leak secrets.

Error messages name the vendor host and the HTTP status, plus the OAuth `error` /
`error_description` (or Google's `error.message`) when the body has them; never the URL's query
(iFlow passes the access token there), never a raw body.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from auth.login.errors import LoginError, TransientLoginError

_DETAIL_LIMIT = 200


def _safe_text(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def error_detail(response: httpx.Response) -> str:
    """`invalid_grant (Code expired)` from an OAuth error body, or Google's error message."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):  # Google: {"error": {"code", "message", "status"}}
        parts = [error.get("status"), error.get("message")]
        return _safe_text(": ".join(str(p) for p in parts if p))
    parts = []
    if isinstance(error, str) and error:
        parts.append(error)
    description = body.get("error_description") or body.get("message") or body.get("msg")
    if isinstance(description, str) and description:
        parts.append(f"({description})" if parts else description)
    return _safe_text(" ".join(parts))


class OAuthClient:
    def __init__(
        self,
        rewrite: Callable[[str], str],
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._rewrite = rewrite
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    def close(self) -> None:
        self._client.close()

    def url(self, url: str) -> str:
        """Where a vendor URL really goes (also for pages shown to the user)."""
        return self._rewrite(url)

    def _where(self, url: str, target: str) -> str:
        host = urllib.parse.urlsplit(url).hostname or url
        if target != url:
            real = urllib.parse.urlsplit(target)
            return f"{host} (via {real.scheme}://{real.netloc} from upstream-overrides)"
        return host

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        target = self._rewrite(url)
        try:
            return self._client.request(
                method, target, headers=headers, params=params, data=data, json=json
            )
        except httpx.TimeoutException:
            raise TransientLoginError(
                f"{what}: {self._where(url, target)} did not answer in time; check the network "
                "(and HTTPS_PROXY, if set) and try again"
            ) from None
        except httpx.HTTPError as e:
            raise TransientLoginError(
                f"{what}: cannot reach {self._where(url, target)} ({type(e).__name__}); check the "
                "network (and HTTPS_PROXY, if set) and try again"
            ) from None
        except (httpx.InvalidURL, ValueError):  # an unusable URL (a bad override)
            raise LoginError(f"{what}: {self._where(url, target)} is not a usable URL") from None

    def failure(self, what: str, url: str, response: httpx.Response) -> str:
        detail = error_detail(response)
        where = self._where(url, self._rewrite(url))
        return f"{what} failed: {where} answered HTTP {response.status_code}" + (
            f": {detail}" if detail else ""
        )

    def json(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: Iterable[int] = (200, 201),
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The JSON object a successful call returns; anything else is a `LoginError`."""
        response = self.request(method, url, what=what, **kwargs)
        if response.status_code not in set(ok):
            error = TransientLoginError if response.status_code >= 500 else LoginError
            raise error(self.failure(what, url, response))
        return self.parse(what, url, response)

    def parse(self, what: str, url: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            where = self._where(url, self._rewrite(url))
            raise LoginError(f"{what}: {where} answered with something other than a JSON object")
        return body
