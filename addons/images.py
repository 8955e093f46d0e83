"""Fetching images given by URL for upstreams that only take them inline (Gemini).

The URL comes from a client, so every hop is checked by `routing.fetch_policy` before any
connection: http(s) only, resolved once, every address permitted, and the connection made to the
checked address (Host header and TLS server name stay the URL's host), so that a second DNS
answer cannot send it elsewhere. Redirects are followed by hand, each re-checked. Size and total
time are capped; connections are never reused (a pooled connection verified for one host name
must not carry a request for another).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import urllib.parse
from collections.abc import Sequence

import httpx

from routing.fetch_policy import FetchPolicy, IPAddress, RefusedAddress, Resolver, checked_addresses, resolve
from translators.canonical import Image
from translators.translate import TranslationError

logger = logging.getLogger("cliproxy")

# Gemini's inline request data is capped at about 20 MB in all: the cap for one request's images.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
FETCH_DEADLINE = 20.0  # seconds for one image: resolution, every hop and the whole body
MAX_REDIRECTS = 3
CONCURRENT_FETCHES = 4  # per request
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HOP_TIMEOUT = httpx.Timeout(10.0)


def _where(url: str) -> str:
    """The URL as it may be repeated in an error: no user info, no query (the query of a
    presigned URL is a credential), no fragment, bounded."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    except ValueError:
        shown = "(an invalid URL)"
    return shown if len(shown) <= 200 else shown[:200] + "…"


class _Budget:
    """The bytes one request's images may still take."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, size: int, where: str) -> None:
        if size > self.left:
            raise TranslationError(
                f"the image at {where} brings the request's images past {MAX_IMAGE_BYTES // 2**20} MB; "
                "send smaller images"
            )
        self.left -= size


class ImageFetcher:
    def __init__(
        self,
        *,
        resolver: Resolver = resolve,
        ssl_context: ssl.SSLContext | None = None,
        deadline: float = FETCH_DEADLINE,
    ) -> None:
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._deadline = deadline
        self._policy: tuple[object, FetchPolicy] | None = None

    def policy(self, section: object) -> FetchPolicy:
        """The policy of the config's `image-fetch` section, made once per config."""
        if self._policy is None or self._policy[0] is not section:
            self._policy = (section, FetchPolicy.from_config(section))
        return self._policy[1]

    async def inline_all(self, images: Sequence[Image], policy: FetchPolicy) -> None:
        """Replace each image's URL by its bytes, or raise `TranslationError` (a 400) saying why
        not; the first failure cancels the other fetches."""
        budget = _Budget(MAX_IMAGE_BYTES)
        gate = asyncio.Semaphore(CONCURRENT_FETCHES)

        async def one(image: Image) -> None:
            async with gate:
                await self.inline(image, policy, budget)

        tasks = [asyncio.ensure_future(one(image)) for image in images]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def inline(self, image: Image, policy: FetchPolicy, budget: _Budget | None = None) -> None:
        assert image.url is not None
        where = _where(image.url)
        try:
            async with asyncio.timeout(self._deadline):
                data, media_type = await self._fetch(image.url, where, policy, budget or _Budget(MAX_IMAGE_BYTES))
        except TimeoutError:
            raise _unfetched(where, f"not within {self._deadline:g} s") from None
        image.data = base64.b64encode(data).decode()
        image.media_type = media_type if media_type.startswith("image/") else image.media_type or "image/png"
        image.url = None

    async def _fetch(self, url: str, where: str, policy: FetchPolicy, budget: _Budget) -> tuple[bytes, str]:
        target = _parse(url, where)
        for hop in range(MAX_REDIRECTS + 1):
            try:
                # The IDNA form: the one the TLS server name and Host header carry.
                host = target.raw_host.decode("ascii")
                addresses = await checked_addresses(policy, host, _port(target), self._resolver)
            except RefusedAddress:
                logger.info(f"cliproxy: image URL refused: {_where(str(target))}: not a public address")
                # One message whether the host is private or does not resolve at all: the
                # answer must not tell a client which internal names exist.
                what = " redirects to a host that does" if hop else ": its host does"
                raise TranslationError(
                    f"the image at {where}{what} not resolve to a public address, so the proxy does not "
                    "fetch it; send it inline (base64) instead"
                ) from None
            # A transport of its own per hop: no connection pool shared across host names, and
            # none of the client's extras (environment proxies, cookies, its request log line,
            # which would repeat the URL's query).
            async with httpx.AsyncHTTPTransport(verify=self._ssl(), trust_env=False) as transport:
                response = await _connect(transport, target, addresses, where)
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        target = _next_hop(target, response.headers["location"], where)
                        continue
                    return await _read(response, where, budget)
                finally:
                    await response.aclose()
        raise TranslationError(
            f"the image at {where} redirects more than {MAX_REDIRECTS} times; send it inline (base64) instead"
        )

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # httpx's default: certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set.
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context


async def _connect(
    transport: httpx.AsyncHTTPTransport, target: httpx.URL, addresses: list[IPAddress], where: str
) -> httpx.Response:
    """GET `target` from the first of its checked addresses that accepts a connection."""
    request = httpx.Request(
        "GET",
        target.copy_with(username=None, password=None),  # sets Host from the URL's host
        headers={"accept": "image/*,*/*;q=0.5", "accept-encoding": "identity"},
        extensions={
            "timeout": _HOP_TIMEOUT.as_dict(),
            # The certificate is checked against the URL's host, not the address.
            "sni_hostname": target.raw_host.decode("ascii"),
        },
    )
    error: Exception | None = None
    for address in addresses:
        request.url = request.url.copy_with(host=str(address).split("%")[0])
        try:
            response = await transport.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            error = e
            continue
        except httpx.HTTPError as e:
            raise _unfetched(where, type(e).__name__) from None
        response.request = request
        return response
    raise _unfetched(where, type(error).__name__ if error else "no address")


def _unfetched(where: str, why: str) -> TranslationError:
    return TranslationError(f"the image at {where} could not be fetched ({why}); send it inline (base64) instead")


def _parse(url: str, where: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise TranslationError(f"the image URL {where} is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise TranslationError(
            f"the image at {where}: only http and https URLs are fetched; send it inline (base64) instead"
        )
    if not parsed.host:
        raise TranslationError(f"the image URL {where} has no host")
    return parsed


def _next_hop(target: httpx.URL, location: str, where: str) -> httpx.URL:
    try:
        joined = str(target.join(location))
    except (httpx.InvalidURL, ValueError, TypeError):
        raise TranslationError(f"the image at {where} redirects to an invalid URL") from None
    return _parse(joined, where)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def _read(response: httpx.Response, where: str, budget: _Budget) -> tuple[bytes, str]:
    if response.status_code != 200:
        raise TranslationError(
            f"the image at {where} could not be fetched (HTTP {response.status_code}); send it inline (base64) instead"
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Asked for identity; decoding a compressed body would let a small answer expand past
        # the cap in one step.
        raise _unfetched(where, f"sent with Content-Encoding {encoding[:20]}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget.left:
        budget.take(int(declared), where)  # refused before reading a byte
    chunks: list[bytes] = []
    try:
        async for chunk in response.aiter_raw():
            budget.take(len(chunk), where)
            chunks.append(chunk)
    except httpx.HTTPError as e:
        raise _unfetched(where, type(e).__name__) from None
    return b"".join(chunks), response.headers.get("content-type", "").split(";")[0].strip()


__all__ = ["FETCH_DEADLINE", "MAX_IMAGE_BYTES", "MAX_REDIRECTS", "ImageFetcher"]
