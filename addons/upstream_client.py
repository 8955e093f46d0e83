"""The HTTP client of the pool's attempts: one aiohttp session, and what its errors mean.

aiohttp rather than httpx here because this runs once per request on the hot path, and its
C-accelerated client measured at about a quarter of httpx's CPU per request (470 vs 1,750 us
on a loaded two-core machine, same fake upstream). The proxy's other requests (token refresh,
images, logins) stay on httpx.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aiohttp
from mitmproxy.net import encoding
from yarl import URL

from routing.config import Config

# aiohttp's own defaults would change an intercepted CLI's header set: only what the client
# sent (and the credential) goes upstream.
_NO_DEFAULT_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Upstream answers with long header lines (cookies, policy headers) must not fail the attempt.
_MAX_FIELD_SIZE = 65536
# A whole (non-stream) answer is held in memory to be checked, translated and counted: past
# this an upstream could exhaust the proxy's memory. Generous for base64 images in an answer;
# a stream has no such limit, as it is passed on chunk by chunk.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# An error answer is read for its retry hint and relayed when nothing else answers.
MAX_ERROR_BYTES = 1024 * 1024


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: tuple[Config, aiohttp.ClientTimeout] | None = None

    def session(self) -> aiohttp.ClientSession:
        # Made on first use, so that it belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # Every open stream holds a connection: no cap but the upstream's own.
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                auto_decompress=False,  # the client gets the upstream's bytes as they are
                skip_auto_headers=_NO_DEFAULT_HEADERS,
                # A cookie one upstream sets must never ride along on another credential's call.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # `proxy-url` in the config says where traffic goes, not the env
                max_field_size=_MAX_FIELD_SIZE,
            )
        return self._session

    def timeout(self, config: Config) -> aiohttp.ClientTimeout:
        if self._timeouts is None or self._timeouts[0] is not config:
            self._timeouts = (
                config,
                aiohttp.ClientTimeout(
                    total=None,
                    connect=config.connect_timeout,
                    sock_connect=config.connect_timeout,
                    # Waiting for the headers, and for each next chunk of a stream.
                    sock_read=config.response_header_timeout,
                ),
            )
        return self._timeouts[1]

    async def send(
        self,
        config: Config,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        proxy: str | None,
    ) -> aiohttp.ClientResponse:
        """The response, its body not read yet. Raises `UNREACHABLE` errors."""
        for tries_left in (1, 0):
            try:
                return await self.session().request(
                    method,
                    URL(url, encoded=True),  # as built, percent-encoding included: never re-quoted
                    headers=headers,
                    data=body,
                    proxy=proxy,
                    timeout=self.timeout(config),
                    allow_redirects=False,
                )
            except aiohttp.ServerDisconnectedError:
                # A kept-alive connection the upstream closed as it was handed this request
                # (idle timeouts race with reuse): the request never reached it, and one more
                # try goes out on a fresh connection. A second close is the upstream's answer.
                if not tries_left:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# What an attempt can fail with before (or while) an upstream answers.
UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError)


def why_unreachable(e: BaseException) -> str:
    """A few words on why the upstream could not be reached (never a URL or a secret)."""
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if isinstance(e, aiohttp.SocketTimeoutError):
        return "no answer in time"
    if isinstance(e, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(e, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        return "TLS failure"
    if isinstance(e, (aiohttp.ClientHttpProxyError, aiohttp.ClientProxyConnectionError)):
        return "upstream proxy failed"
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        return "host not found"
    if isinstance(e, aiohttp.ClientConnectorError):
        if isinstance(e.os_error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e.os_error, ssl.SSLError):
            return "TLS failure"
        return "cannot connect"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "connection closed without an answer"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "answer cut short"
    if isinstance(e, aiohttp.ClientOSError):
        return "connection reset"
    return type(e).__name__


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The response's body, or None (and its connection closed unread) when it is larger than
    `limit` bytes as sent. Raises `UNREACHABLE` errors."""
    if response.content_length is not None and response.content_length > limit:
        response.close()
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            response.close()
            return None
        parts.append(chunk)
    return b"".join(parts)


def decoded(body: bytes, content_encoding: str | None) -> bytes | None:
    """`body` without its content encoding (gzip, br, ...), or None if it cannot be decoded."""
    if not content_encoding or content_encoding.strip().lower() == "identity":
        return body
    try:
        return encoding.decode(body, content_encoding.strip().lower())  # type: ignore[return-value]
    except ValueError:
        return None
