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

from addons.common import reply_error
from routing.router import Route, UnknownModel
from routing.runtime import Runtime
from routing.upstream import CLIENT_AUTH_HEADERS, ClientRequest, UpstreamTarget, header_list, target
from translators.errors import retry_hint
from translators.formats import Format
from translators.passthrough import replace_model

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
    route: Route | None = None
    tried: set[str] = field(default_factory=set)
    attempts: int = 0
    overhead: float = 0.0  # seconds spent in the proxy's own code, upstream waits excluded
    secrets: tuple[str, ...] = ()


def _mask(value: str) -> str:
    return value[:7] + "…" if value.lower().startswith("bearer ") else "…"


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._exchanges: dict[str, Exchange] = {}
        self._client: httpx.AsyncClient | None = None

    async def done(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- first attempt ---------------------------------------------------------------------

    async def dispatch(self, flow: http.HTTPFlow, client: ClientRequest) -> None:
        """Route `client` to a credential and rewrite the flow to go there, or answer it."""
        started = time.perf_counter()
        fmt = client.endpoint.format
        try:
            routes = self.runtime.router.resolve(client.model, fmt)
        except UnknownModel as e:
            reply_error(flow, fmt, 404, str(e), code="model_not_found")
            return
        ex = Exchange(flow, client, routes)
        route = self._pick(ex)
        config = self.runtime.config
        if route is None and config.request_retry > 0:
            wait = self._soonest_recovery(ex)
            if wait is not None and wait <= config.max_retry_interval:
                ex.overhead += time.perf_counter() - started
                await asyncio.sleep(wait)
                started = time.perf_counter()
                route = self._pick(ex)
        if route is None:
            self._reply_cooling(flow, ex)
            return
        self._rewrite(flow, ex, route)
        self._exchanges[flow.id] = ex
        ex.overhead += time.perf_counter() - started

    def _pick(self, ex: Exchange) -> Route | None:
        candidates = [(r.credential, r.model) for r in ex.routes]
        pick = self.runtime.pool.pick(candidates, ex.client.model, ex.tried)
        if logger.isEnabledFor(logging.DEBUG):
            for skip in pick.skipped:
                logger.debug(f"cliproxy: {ex.client.model}: skipped {skip.credential.label}: {skip.reason}")
        return None if pick.index is None else ex.routes[pick.index]

    def _soonest_recovery(self, ex: Exchange) -> float | None:
        candidates = [(r.credential, r.model) for r in ex.routes]
        return self.runtime.pool.pick(candidates, ex.client.model).retry_after

    def _body(self, client: ClientRequest, route: Route) -> bytes:
        if client.endpoint.format is Format.GEMINI or client.parsed is None:
            return client.body  # Gemini names the model in the path
        return replace_model(client.body, client.parsed, route.model)

    def _target(self, ex: Exchange, route: Route) -> UpstreamTarget:
        ex.route = route
        ex.attempts += 1
        ex.tried.add(route.credential.id)
        t = target(route.credential, ex.client, route.model, self.runtime.config.upstream_overrides)
        ex.secrets = tuple(t.auth_headers)
        return t

    def _rewrite(self, flow: http.HTTPFlow, ex: Exchange, route: Route) -> None:
        t = self._target(ex, route)
        req = flow.request
        if req.url != t.url:
            req.url = t.url
        headers = req.headers
        for name in CLIENT_AUTH_HEADERS:
            if name in headers:
                del headers[name]
        for name, value in (*t.auth_headers.items(), *t.extra_headers.items()):
            headers[name] = value
        body = self._body(ex.client, route)
        if body is not ex.client.body:
            req.raw_content = body
            headers["content-length"] = str(len(body))
        self._annotate(flow, ex)

    # -- hooks -----------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.get(flow.id)
        if ex is None:
            return
        started = time.perf_counter()
        self._hide_secrets(flow, ex)
        assert flow.response is not None
        if ex.client.stream and flow.response.status_code < 300:
            flow.response.stream = True
        ex.overhead += time.perf_counter() - started
        flow.response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"

    async def response(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or flow.response is None:
            return
        started = time.perf_counter()
        status = flow.response.status_code
        assert ex.route is not None
        if status in _ROTATE:
            hint = retry_hint(flow.response.headers, flow.response.raw_content or b"")
            self._failed(ex, ex.route, status, hint)
            ex.overhead += time.perf_counter() - started
            replacement = await self._failover(ex, status)
            started = time.perf_counter()
            if replacement is None:
                self._reply_cooling(flow, ex, keep_if_none_cooling=True)
            else:
                flow.response = replacement
        elif status < 400:
            self.runtime.pool.succeeded(ex.route.credential, ex.route.model)
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
        if ex is None or ex.route is None:
            return
        self._hide_secrets(flow, ex)
        # mitmproxy has already answered the client (502); the next request goes elsewhere.
        self._failed(ex, ex.route, 0, None)
        self._annotate(flow, ex)

    # -- failover --------------------------------------------------------------------------

    def _failed(self, ex: Exchange, route: Route, status: int, hint: float | None) -> None:
        wait = self.runtime.pool.failed(route.credential, route.model, status, hint)
        what = f"HTTP {status}" if status else "connection failed"
        logger.info(
            f"cliproxy: {route.credential.label} failed for {route.model} ({what}); "
            f"resting it {wait:.0f}s"
        )

    async def _failover(self, ex: Exchange, status: int) -> http.Response | None:
        """Try the remaining credentials, in rounds; the last upstream error if all fail."""
        config = self.runtime.config
        rounds_left = config.request_retry
        in_round = 1
        last: http.Response | None = None
        while True:
            route = self._pick(ex)
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
            response = await self._send(ex, route)
            if response is None:
                status = 502
                continue
            status = response.status_code
            if status not in _ROTATE:
                if status < 400:
                    self.runtime.pool.succeeded(route.credential, route.model)
                return response
            self._failed(ex, route, status, retry_hint(response.headers, response.raw_content or b""))
            last = response

    async def _send(self, ex: Exchange, route: Route) -> http.Response | None:
        t = self._target(ex, route)
        body = self._body(ex.client, route)
        headers = header_list(ex.client.raw_headers, t, len(body))
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=False)
        started = time.time()
        try:
            async with self._client.stream(
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

    def _reply_cooling(
        self, flow: http.HTTPFlow, ex: Exchange, *, keep_if_none_cooling: bool = False
    ) -> None:
        wait = self._soonest_recovery(ex)
        if wait is None:
            if keep_if_none_cooling:
                return  # nothing is cooling: the upstream's own error says the most
            wait = 0.0
        fmt = ex.client.endpoint.format
        reply_error(
            flow,
            fmt,
            429,
            f"all credentials for model {ex.client.model!r} are cooling down; "
            f"retry in {max(1, round(wait))}s",
            code="model_cooldown",
            retry_after=wait,
        )

    # -- traceability ----------------------------------------------------------------------

    def _hide_secrets(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        # The request has left: what mitmweb shows and what a saved flow holds is masked.
        for name in ex.secrets:
            if name in flow.request.headers:
                flow.request.headers[name] = _mask(flow.request.headers[name])

    def _annotate(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        route = ex.route
        if route is None:
            return
        cred = route.credential
        info = {
            "provider": cred.service or cred.provider,
            "credential": cred.label,
            "model": ex.client.model,
            "upstream_model": route.model,
            "attempts": ex.attempts,
            "translation": f"none ({ex.client.endpoint.format.value} passthrough)",
        }
        flow.metadata[ANNOTATION] = info
        flow.comment = (
            f"cliproxy: {info['provider']} via {cred.label}; model {ex.client.model}"
            + (f" -> {route.model}" if route.model != ex.client.model else "")
            + f"; {ex.attempts} attempt{'s' if ex.attempts != 1 else ''}; {info['translation']}"
        )
