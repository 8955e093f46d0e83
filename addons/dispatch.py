"""Sends a client request upstream on a pool credential, streams the answer, fails over.

The first attempt is mitmproxy's own: the flow is rewritten to the chosen credential's upstream
and mitmproxy dials it, so a successful stream reaches the client chunk by chunk. When that
attempt fails with a status worth rotating on, the `response` hook re-sends the request on the
next credential through httpx and puts that answer in the flow (a retried stream therefore
arrives as one complete body; cooldowns make this rare, since a credential known to be
exhausted is skipped before dispatch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx
from mitmproxy import http
from mitmproxy.net import server_spec

from addons.common import reply, reply_error
from addons.images import ImageFetcher
from routing import legs
from routing.legs import Leg
from routing.router import Route, UnknownModel
from routing.runtime import Runtime
from routing.upstream import CLIENT_AUTH_HEADERS, ClientRequest, header_list, upstream_proxy
from translators.errors import error_body, retry_hint
from translators.translate import TranslationError

logger = logging.getLogger("cliproxy")

OVERHEAD_HEADER = "x-cliproxy-overhead-ms"
ANNOTATION = "cliproxy"

# Statuses that say "this credential, not this request": rotate to the next one.
_ROTATE = frozenset({401, 402, 403, 408, 429, 500, 502, 503, 504, 529})
# Statuses for which a whole new round over the credentials is worth it (CLIProxyAPI's set).
_NEW_ROUND = frozenset({403, 408, 429, 500, 502, 503, 504, 529})
_HOP_BY_HOP = frozenset({b"transfer-encoding", b"connection", b"keep-alive", b"content-length"})
# LLM answers can take minutes to start; the connect timeout is what catches a dead upstream.
_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)


@dataclass(slots=True)
class Exchange:
    """One client request's journey across credentials."""

    flow: http.HTTPFlow
    client: ClientRequest
    routes: list[Route]
    leg: Leg | None = None
    tried: set[str] = field(default_factory=set)
    attempts: int = 0
    overhead: float = 0.0  # seconds spent in the proxy's own code, upstream waits excluded
    secrets: tuple[str, ...] = ()
    # Why credentials were passed over without a try (an expired token that cannot be refreshed).
    unusable: list[str] = field(default_factory=list)


# Coroutines started from synchronous hooks, kept referenced until they finish.
_BACKGROUND: set[asyncio.Future] = set()


def background(coro) -> asyncio.Future:
    future = asyncio.ensure_future(coro)
    _BACKGROUND.add(future)
    future.add_done_callback(_BACKGROUND.discard)
    return future


def _mask(value: str) -> str:
    return value[:7] + "…" if value.lower().startswith("bearer ") else "…"


def _client_side(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and flow.error.msg.startswith("Client disconnected")


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._exchanges: dict[str, Exchange] = {}
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._images = ImageFetcher()

    def done(self):
        # Synchronous: mitmproxy calls `done` synchronously when it reloads the script. The
        # returned future is awaited on shutdown.
        if not self._clients:
            return None
        clients, self._clients = list(self._clients.values()), {}
        return background(asyncio.gather(*(c.aclose() for c in clients)))

    def _http(self, proxy: str | None = None) -> httpx.AsyncClient:
        """A client for the requests the proxy sends itself (retries, images), one per upstream
        proxy; made on first use, so that it belongs to the running event loop."""
        client = self._clients.get(proxy)
        if client is None:
            client = self._clients[proxy] = httpx.AsyncClient(
                timeout=_TIMEOUT, follow_redirects=False, proxy=proxy
            )
        return client

    # -- first attempt ---------------------------------------------------------------------

    async def dispatch(
        self, flow: http.HTTPFlow, client: ClientRequest, routes: list[Route] | None = None
    ) -> None:
        """Route `client` to a credential and rewrite the flow to go there, or answer it."""
        started = time.perf_counter()
        fmt = client.endpoint.format
        if routes is None:
            try:
                routes = self.runtime.router.resolve(client.model)
            except UnknownModel as e:
                reply_error(flow, fmt, 404, str(e), code="model_not_found")
                return
        ex = Exchange(flow, client, routes)
        ex.overhead += time.perf_counter() - started
        route = await self._pick_usable(ex)
        started = time.perf_counter()
        config = self.runtime.config
        if route is None and config.request_retry > 0:
            wait = self._soonest_recovery(ex)
            if wait is not None and wait <= config.max_retry_interval:
                ex.overhead += time.perf_counter() - started
                await asyncio.sleep(wait)
                route = await self._pick_usable(ex)
                started = time.perf_counter()
        if route is None:
            self._reply_unavailable(flow, ex)
            return
        try:
            leg = await self._prepared_leg(ex, route)
        except TranslationError as e:
            reply_error(flow, fmt, 400, str(e))
            return
        if leg.local_answer is not None:
            reply(flow, 200, leg.local_answer)
        else:
            self._rewrite(flow, leg)
            self._exchanges[flow.id] = ex
        self._annotate(flow, ex)
        ex.overhead += time.perf_counter() - started

    def _pick(self, ex: Exchange) -> Route | None:
        candidates = [(r.credential, r.model) for r in ex.routes]
        pick = self.runtime.pool.pick(candidates, ex.client.model, ex.tried)
        if logger.isEnabledFor(logging.DEBUG):
            for skip in pick.skipped:
                logger.debug(f"cliproxy: {ex.client.model}: skipped {skip.credential.label}: {skip.reason}")
        return None if pick.index is None else ex.routes[pick.index]

    async def _pick_usable(self, ex: Exchange) -> Route | None:
        """The next candidate whose token is fresh (refreshed first when it has expired)."""
        while True:
            route = self._pick(ex)
            if route is None or not route.credential.oauth:
                return route
            cred, why = await self.runtime.refresher.usable(route.credential)
            if cred is not None:
                return Route(cred, route.model)
            ex.tried.add(route.credential.id)
            ex.unusable.append(f"{route.credential.label}: {why}")
            logger.info(f"cliproxy: {ex.client.model}: skipped {route.credential.label}: {why}")

    def _soonest_recovery(self, ex: Exchange) -> float | None:
        candidates = [(r.credential, r.model) for r in ex.routes]
        return self.runtime.pool.pick(candidates, ex.client.model).retry_after

    def _leg(self, ex: Exchange, route: Route) -> Leg:
        ex.attempts += 1
        ex.tried.add(route.credential.id)
        if route.credential.oauth:
            # A token refreshed since the candidates were listed replaces the one they hold.
            current = self.runtime.refresher.current(route.credential)
            if current is not None and current is not route.credential:
                route = Route(current, route.model)
        ex.leg = legs.plan(ex.client, route, self.runtime.config.upstream_overrides)
        ex.secrets = tuple(ex.leg.target.auth_headers)
        return ex.leg

    async def _prepared_leg(self, ex: Exchange, route: Route) -> Leg:
        """The leg for `route`, with images the upstream cannot fetch fetched and inlined."""
        leg = self._leg(ex, route)
        if leg.translated and logger.isEnabledFor(logging.DEBUG):
            if dropped := legs.dropped_parameters(ex.client, leg):
                logger.debug(f"cliproxy: {leg.description}: dropped {', '.join(dropped)}")
        images = legs.remote_images(leg)
        if not images:
            return leg
        await self._images.inline_all(images, self._images.policy(self.runtime.config.image_fetch))
        ex.leg = legs.plan(ex.client, leg.route, self.runtime.config.upstream_overrides, leg.request)
        return ex.leg

    def _rewrite(self, flow: http.HTTPFlow, leg: Leg) -> None:
        if proxy := upstream_proxy(leg.route.credential, self.runtime.config.proxy_url):
            # mitmproxy tunnels this flow's connection through the proxy (CONNECT).
            flow.server_conn.via = server_spec.parse(proxy, "http")
        req = flow.request
        if req.url != leg.target.url:
            req.url = leg.target.url
        headers = req.headers
        for name in CLIENT_AUTH_HEADERS:
            if name in headers:
                del headers[name]
        for name, value in (
            *legs.request_headers(leg).items(),
            *leg.target.auth_headers.items(),
            *leg.target.extra_headers.items(),
        ):
            headers[name] = value
        if leg.body is not req.raw_content:
            req.raw_content = leg.body
            headers["content-length"] = str(len(leg.body))

    # -- hooks -----------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.get(flow.id)
        if ex is None:
            return
        started = time.perf_counter()
        self._hide_secrets(flow, ex)
        response = flow.response
        assert response is not None and ex.leg is not None
        if ex.client.stream and response.status_code < 300:
            if ex.leg.converts:
                response.stream = legs.stream_translator(ex.leg, ex.client)
                response.headers["content-type"] = legs.stream_content_type(ex.client)
                response.headers.pop("content-length", None)
            else:
                response.stream = True
        ex.overhead += time.perf_counter() - started
        flow.response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"

    async def response(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or flow.response is None:
            return
        started = time.perf_counter()
        status = flow.response.status_code
        leg = ex.leg
        assert leg is not None
        retried: http.Response | None = None
        if status == 401 and leg.route.credential.oauth:
            ex.overhead += time.perf_counter() - started
            retried = await self._retry_refreshed(ex, leg)
            started = time.perf_counter()
            if retried is not None:
                status, leg = retried.status_code, ex.leg
                assert leg is not None
        if status in _ROTATE:
            failed = retried if retried is not None else flow.response
            hint = retry_hint(failed.headers, failed.raw_content or b"")
            self._failed(ex, leg.route, status, hint)
            ex.overhead += time.perf_counter() - started
            replacement = await self._failover(ex, status)
            started = time.perf_counter()
            if replacement is not None:
                flow.response = replacement
            elif self._soonest_recovery(ex) is not None:
                self._reply_cooling(flow, ex)
            elif retried is not None:
                flow.response = self._converted(ex, retried)
            else:
                self._to_client(flow, ex)  # nothing is cooling: the upstream's error says most
        else:
            if status < 400:
                self.runtime.pool.succeeded(leg.route.credential, leg.route.model)
            if retried is not None:
                flow.response = self._converted(ex, retried)
            elif not flow.response.stream:
                self._to_client(flow, ex)
        self._annotate(flow, ex)
        ex.overhead += time.perf_counter() - started
        if flow.response is not None and not flow.response.stream:
            flow.response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"

    def server_connect_error(self, data) -> None:
        # mitmproxy's own `error` hooks (the console dump among them) run before ours: hide the
        # credential from them as soon as the connection is known to have failed.
        for ex in self._exchanges.values():
            if ex.flow.client_conn.id == data.client.id:
                self._hide_secrets(ex.flow, ex)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or ex.leg is None:
            return
        self._hide_secrets(flow, ex)
        self._annotate(flow, ex)
        if flow.response is not None or _client_side(flow):
            # The upstream answered, or the client hung up (a Stop button): the credential is
            # fine, and resting it would lock the next request out.
            return
        # mitmproxy has already answered the client (502); the next request goes elsewhere.
        self._failed(ex, ex.leg.route, 0, None)

    # -- failover --------------------------------------------------------------------------

    def _failed(self, ex: Exchange, route: Route, status: int, hint: float | None) -> None:
        wait = self.runtime.pool.failed(route.credential, route.model, status, hint)
        what = f"HTTP {status}" if status else "connection failed"
        logger.info(
            f"cliproxy: {route.credential.label} failed for {route.model} ({what}); "
            f"resting it {wait:.0f}s"
        )

    async def _retry_refreshed(self, ex: Exchange, leg: Leg) -> http.Response | None:
        """An OAuth credential answered 401: refresh its token (once) and resend on it."""
        cred = leg.route.credential
        fresh = await self.runtime.refresher.after_unauthorized(cred)
        if fresh is None:
            return None
        logger.info(f"cliproxy: {cred.label} answered 401; token refreshed, retrying on it")
        try:
            retry_leg = await self._prepared_leg(ex, Route(fresh, leg.route.model))
        except TranslationError:
            return None
        return await self._send(ex, retry_leg)

    async def _failover(self, ex: Exchange, status: int) -> http.Response | None:
        """Try the remaining credentials, in rounds; the last upstream error if all fail."""
        config = self.runtime.config
        rounds_left = config.request_retry
        in_round = 1
        last: http.Response | None = None
        while True:
            route = await self._pick_usable(ex)
            round_over = route is None or (
                config.max_retry_credentials and in_round >= config.max_retry_credentials
            )
            if round_over:
                if rounds_left <= 0 or status not in _NEW_ROUND:
                    return last
                wait = self._soonest_recovery(ex) or 0.0
                if wait > config.max_retry_interval:
                    return last
                rounds_left -= 1
                in_round = 0
                ex.tried.clear()
                await asyncio.sleep(wait)
                continue
            assert route is not None
            in_round += 1
            try:
                leg = await self._prepared_leg(ex, route)
            except TranslationError as e:
                return self._error_response(ex, 400, str(e))
            if leg.local_answer is not None:
                return http.Response.make(200, leg.local_answer, {"content-type": "application/json"})
            response = await self._send(ex, leg)
            if response is None:
                status = 502
                continue
            if response.status_code == 401 and route.credential.oauth:
                response = await self._retry_refreshed(ex, leg) or response
                route = ex.leg.route if ex.leg is not None else route
            status = response.status_code
            if status not in _ROTATE:
                if status < 400:
                    self.runtime.pool.succeeded(route.credential, route.model)
                return self._converted(ex, response)
            self._failed(ex, route, status, retry_hint(response.headers, response.raw_content or b""))
            last = self._converted(ex, response)

    async def _send(self, ex: Exchange, leg: Leg) -> http.Response | None:
        t, route = leg.target, leg.route
        headers = header_list(ex.client.raw_headers, t, legs.request_headers(leg), len(leg.body))
        body = leg.body
        started = time.time()
        try:
            proxy = upstream_proxy(route.credential, self.runtime.config.proxy_url)
            async with self._http(proxy).stream(
                ex.client.method, t.url, headers=headers, content=body
            ) as r:
                # Raw bytes: the body goes to the client with the upstream's own encoding.
                content = b"".join([chunk async for chunk in r.aiter_raw()])
        except httpx.HTTPError as e:
            logger.info(f"cliproxy: {route.credential.label}: upstream unreachable ({type(e).__name__})")
            self._failed(ex, route, 0, None)
            return None
        headers_out = [(k, v) for k, v in r.headers.raw if k.lower() not in _HOP_BY_HOP]
        headers_out.append((b"content-length", str(len(content)).encode()))
        return http.Response(
            b"HTTP/1.1",
            r.status_code,
            r.reason_phrase.encode(),
            http.Headers(headers_out),
            content,
            None,
            started,
            time.time(),
        )

    def _reply_unavailable(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        if ex.unusable and self._soonest_recovery(ex) is None:
            reply_error(
                flow,
                ex.client.endpoint.format,
                503,
                f"no credential for model {ex.client.model!r} can serve now: " + "; ".join(ex.unusable),
                code="credentials_unavailable",
            )
            return
        self._reply_cooling(flow, ex)

    def _reply_cooling(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        wait = self._soonest_recovery(ex) or 0.0
        reply_error(
            flow,
            ex.client.endpoint.format,
            429,
            f"all credentials for model {ex.client.model!r} are cooling down; "
            f"retry in {max(1, round(wait))}s",
            code="model_cooldown",
            retry_after=wait,
        )

    # -- answering in the client's format ------------------------------------------------------

    def _to_client(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        assert flow.response is not None
        flow.response = self._converted(ex, flow.response)

    def _converted(self, ex: Exchange, response: http.Response) -> http.Response:
        """A complete upstream response, translated for the client when the leg translates."""
        leg = ex.leg
        if leg is None or not leg.converts:
            return response
        try:
            content_type, body = legs.whole_response(
                leg, ex.client, response.status_code, response.content or b""
            )
        except legs.UpstreamStreamError as e:
            return self._error_response(ex, e.status, e.message)
        except ValueError as e:
            logger.warning(f"cliproxy: {leg.route.credential.label}: unreadable upstream answer: {e}")
            return self._error_response(
                ex, 502, f"the upstream's answer could not be translated ({type(e).__name__})"
            )
        response.headers.pop("content-encoding", None)
        response.headers["content-type"] = content_type
        response.content = body
        return response

    def _error_response(self, ex: Exchange, status: int, message: str) -> http.Response:
        return http.Response.make(
            status, error_body(ex.client.endpoint.format, status, message), {"content-type": "application/json"}
        )

    # -- traceability ----------------------------------------------------------------------

    def _hide_secrets(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        # The request has left: what mitmweb shows and what a saved flow holds is masked.
        for name in ex.secrets:
            if name in flow.request.headers:
                flow.request.headers[name] = _mask(flow.request.headers[name])

    def _annotate(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        leg = ex.leg
        if leg is None:
            return
        route, cred = leg.route, leg.route.credential
        info = {
            "provider": cred.service or cred.provider,
            "credential": cred.label,
            "model": ex.client.model,
            "upstream_model": route.model,
            "attempts": ex.attempts,
            "translation": leg.description,
        }
        flow.metadata[ANNOTATION] = info
        flow.comment = (
            f"cliproxy: {info['provider']} via {cred.label}; model {ex.client.model}"
            + (f" -> {route.model}" if route.model != ex.client.model else "")
            + f"; {ex.attempts} attempt{'s' if ex.attempts != 1 else ''}; {info['translation']}"
        )
