"""Sends a client request upstream on a pool credential, streams the answer, fails over.

The request hook picks the first credential and prepares the attempt (translated if need be).
The attempts themselves (addons/upstream_client.py) fail over on every failure before the
client has seen a byte (refused, reset, timed out, a status worth rotating on, a stream that
dies before its first chunk). A request answered whole gets its answer set on the flow right
in the request hook, so mitmproxy never dials out for it. A stream is pointed at the relay
(addons/relay.py), a loopback server of this addon: mitmproxy can stream a body only from a
server connection, so the relay hands back the chosen upstream's chunks as they arrive, and
mitmproxy streams them to the client, translated on the way when the formats differ. A stream
cut short after that ends with its format's own error event.

Either way the flow mitmproxy keeps shows the client's request (its key masked) and the answer
it got; the annotation names the credential, the upstream URL and every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from mitmproxy import http

from addons.common import hide_client_auth, reply, reply_error, request_line
from addons.images import ImageFetcher
from addons.relay import FLOW_HEADER, PHRASES, Answer, Relay
from addons.upstream_client import UNREACHABLE, UpstreamClient, decoded, why_unreachable
from auth import providers
from auth.credential import Credential
from auth.pool import Cooldown
from routing import legs
from routing.legs import Leg
from routing.router import Route, UnknownModel
from routing.runtime import Runtime
from routing.upstream import ClientRequest, header_list, upstream_proxy
from routing.usage import UsageRecord
from translators.canonical import Usage
from translators.errors import error_body, retry_hint
from translators.formats import Format
from translators.terminal import TerminalWatch
from translators.translate import TranslationError
from translators.usage import UsageScan, sane, usage_from_body

logger = logging.getLogger("cliproxy")

OVERHEAD_HEADER = "x-cliproxy-overhead-ms"
FLOW_HEADER_BYTES = FLOW_HEADER.encode()
CREDENTIAL_HEADER = "x-cliproxy-credential"
# The client key label of intercepted traffic (a vendor CLI's own key, not one of the proxy's).
INTERCEPTED = "intercepted"
ANNOTATION = "cliproxy"
# Statuses that say "this credential, not this request": rotate to the next one.
_ROTATE = frozenset({401, 402, 403, 408, 429, 500, 502, 503, 504, 529})
# Failures for which a whole new round over the credentials is worth it (CLIProxyAPI's set,
# and an unreachable upstream, recorded as 0).
_NEW_ROUND = frozenset({0, 403, 408, 429, 500, 502, 503, 504, 529})
_HOP_BY_HOP = frozenset({b"transfer-encoding", b"connection", b"keep-alive", b"content-length"})
_JSON = [(b"content-type", b"application/json")]
# A stream the upstream cut short rests its credential briefly: the next request may well work.
CUT_STREAM_REST = 10.0
# What the answer naming every resting credential lists at most.
_MAX_LISTED = 8
# The error class of the proxy's own answers, by their error code.
_LOCAL_ERRORS = {
    "model_cooldown": "rate_limited",
    "upstream_unreachable": "unreachable",
    "credentials_unavailable": "unavailable",
    "model_not_found": "unknown_model",
}


@dataclass(slots=True)
class Attempt:
    credential: str  # the label, never the secret
    outcome: str  # the status, or why the upstream could not be reached
    ms: float
    kind: str = "answered"  # or a pool RestKind: quota, unreachable, auth, error


@dataclass(slots=True)
class Exchange:
    """One client request's journey across credentials."""

    flow: http.HTTPFlow
    client: ClientRequest
    routes: list[Route]
    leg: Leg | None = None
    tried: set[str] = field(default_factory=set)
    attempts: list[Attempt] = field(default_factory=list)
    overhead: float = 0.0  # seconds spent in the proxy's own code, upstream waits excluded
    # Why credentials were passed over without a try (an expired token that cannot be refreshed).
    unusable: list[str] = field(default_factory=list)
    refreshed: set[str] = field(default_factory=set)  # credential ids refreshed after a 401
    last_error: Answer | None = None  # the last upstream error, should every credential fail
    local: bool = False  # the relay's answer is the proxy's own, already in the client's shape
    # What the relay rewrite took out of the client's request, put back once the answer is in.
    shown: tuple | None = None
    cut: str | None = None  # how the upstream stream broke off, once it has
    task: asyncio.Task | None = None  # the relay's attempts, cancelled if the client leaves
    settled: bool = False  # the pool has heard how the chosen credential did
    client_key: str = INTERCEPTED  # the label of the proxy key the client sent
    code: str | None = None  # the error code of the proxy's own answer
    first_byte: float | None = None  # epoch seconds the relay handed the answer's first bytes over
    usage: Usage | None = None  # of a whole answer, as the upstream reported it
    scan: UsageScan | None = None  # follows a stream that is not translated, for its usage
    watch: object | None = None  # the stream callable (a translator knows the stream's usage)


# Told of every client request the pool served (or answered itself), once it is over.
Finished = Callable[[UsageRecord, str], None]


# Coroutines started from synchronous hooks, kept referenced until they finish.
_BACKGROUND: set[asyncio.Future] = set()


def background(coro) -> asyncio.Future:
    future = asyncio.ensure_future(coro)
    _BACKGROUND.add(future)
    future.add_done_callback(_BACKGROUND.discard)
    return future


def _client_side(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and flow.error.msg.startswith("Client disconnected")


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._exchanges: dict[str, Exchange] = {}
        self._upstream = UpstreamClient()
        self._images = ImageFetcher()
        self._relay = Relay(self.answer)
        self._relay_started: asyncio.Future | None = None
        # Called with each request's record and the path the client called.
        self.finished: list[Finished] = []

    def running(self) -> None:
        self._start_relay()

    def done(self):
        # Synchronous: mitmproxy calls `done` synchronously when it reloads the script. The
        # returned future is awaited on shutdown.
        return background(asyncio.gather(self._relay.close(), self._upstream.close()))

    def _start_relay(self) -> asyncio.Future:
        if self._relay_started is None:
            self._relay_started = background(self._open_relay())
        return self._relay_started

    async def _open_relay(self) -> None:
        await self._relay.start()
        logger.debug(f"cliproxy: upstream relay on 127.0.0.1:{self._relay.port}")

    # -- the request hook: first pick, then off to the relay ----------------------------------

    async def dispatch(
        self,
        flow: http.HTTPFlow,
        client: ClientRequest,
        routes: list[Route] | None = None,
        *,
        client_key: str = INTERCEPTED,
        began: float | None = None,
    ) -> None:
        """Route `client` to a credential and answer the flow, or send it to the relay.
        `client_key` labels the proxy key the client sent (INTERCEPTED: a vendor CLI's call);
        `began` is when the hook that read the call started (perf_counter), counted as the
        proxy's own time."""
        started = time.perf_counter() if began is None else began
        fmt = client.endpoint.format
        if routes is None:
            try:
                routes = self.runtime.router.resolve(client.model)
            except UnknownModel as e:
                reply_error(flow, fmt, 404, str(e), code="model_not_found")
                self._report(flow, Exchange(flow, client, [], local=True, client_key=client_key, code="model_not_found"))
                return
        ex = Exchange(flow, client, routes, client_key=client_key)
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
            status, message, code, retry_after = self._unavailable(ex)
            reply_error(flow, fmt, status, message, code=code, retry_after=retry_after)
            ex.local, ex.code = True, code
            self._report(flow, ex)
            return
        try:
            leg = await self._prepared_leg(ex, route)
        except TranslationError as e:
            self.runtime.pool.release_probe(route.credential, route.model)
            reply_error(flow, fmt, 400, str(e))
            ex.local = True
            self._report(flow, ex)
            return
        if leg.local_answer is not None:
            reply(flow, 200, leg.local_answer)
            self._annotate(flow, ex)
            ex.local = True
            self._report(flow, ex)
            return
        self._exchanges[flow.id] = ex
        ex.overhead += time.perf_counter() - started
        if not ex.client.stream:
            # A whole answer needs no relay: mitmproxy sends a response set here as it is, and
            # skipping its own upstream connection is most of what a small request costs.
            flow.response = self._whole_response(await self._answer(ex))
            return
        started = time.perf_counter()
        await self._start_relay()
        hide_client_auth(flow)  # the flow keeps the client's request, but never its key
        self._to_relay(flow, ex)
        ex.overhead += time.perf_counter() - started

    @staticmethod
    def _whole_response(answer: Answer) -> http.Response:
        return http.Response(
            b"HTTP/1.1",
            answer.status,
            answer.reason or PHRASES.get(answer.status, b""),
            http.Headers([*answer.headers, (b"content-length", b"%d" % len(answer.body))]),
            answer.body,
            None,
            time.time(),
            None,
        )

    def _to_relay(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        # The request's fields are set directly: its setters re-parse and re-check each value.
        data = flow.request.data
        ex.shown = (data.scheme, data.host, data.port, data.headers, data.content)
        data.scheme = b"http"
        data.host = "127.0.0.1"
        data.port = self._relay.port
        # Only the head goes to the relay: the body and the credential are the dispatcher's.
        data.headers = http.Headers(
            [
                (b"host", b"127.0.0.1:%d" % self._relay.port),
                (FLOW_HEADER_BYTES, flow.id.encode()),
                (b"content-length", b"0"),
            ]
        )
        data.content = b""

    @staticmethod
    def _from_relay(flow: http.HTTPFlow, ex: Exchange) -> None:
        """Give the flow the client's request back, for mitmweb and saved flows: the relay's
        request head means nothing to a reader."""
        if ex.shown is not None:
            data = flow.request.data
            data.scheme, data.host, data.port, data.headers, data.content = ex.shown
            ex.shown = None

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

    def _candidates(self, ex: Exchange) -> list:
        return [(r.credential, r.model) for r in ex.routes]

    def _soonest_recovery(self, ex: Exchange) -> float | None:
        return self.runtime.pool.pick(self._candidates(ex), ex.client.model, probe=False).retry_after

    def _leg(self, ex: Exchange, route: Route) -> Leg:
        ex.tried.add(route.credential.id)
        if route.credential.oauth:
            # A token refreshed since the candidates were listed replaces the one they hold.
            current = self.runtime.refresher.current(route.credential)
            if current is not None and current is not route.credential:
                route = Route(current, route.model)
        ex.leg = legs.plan(ex.client, route, self.runtime.config.upstream_overrides)
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

    # -- the relay's side: attempts until one answers ------------------------------------------

    async def answer(self, flow_id: str) -> Answer:
        """The answer for the flow the relay was asked about (its `x-cliproxy-flow`)."""
        ex = self._exchanges.get(flow_id)
        if ex is None or ex.task is not None:
            return Answer(404, [(b"content-type", b"text/plain")], body=b"no such flow")
        return await self._answer(ex)

    async def _answer(self, ex: Exchange) -> Answer:
        ex.task = asyncio.current_task()
        try:
            answer = await self._attempts(ex)
            if answer.chunks is None:
                ex.first_byte = time.time()
            return answer
        except asyncio.CancelledError:
            self._settle(ex)
            raise
        except Exception as e:
            logger.exception("cliproxy: internal error while sending a request upstream")
            self._settle(ex)
            return self._local(ex, 500, f"internal error in cliproxy ({type(e).__name__}); see the proxy's log")

    async def _attempts(self, ex: Exchange) -> Answer:
        config = self.runtime.config
        assert ex.leg is not None
        leg = ex.leg
        rounds_left = config.request_retry
        in_round = 1
        while True:
            outcome = await self._attempt(ex, leg)
            if isinstance(outcome, Answer):
                return outcome
            status = outcome
            while True:
                route = await self._pick_usable(ex)
                round_over = route is None or (
                    config.max_retry_credentials and in_round >= config.max_retry_credentials
                )
                if not round_over:
                    break
                if rounds_left <= 0 or status not in _NEW_ROUND:
                    return self._exhausted(ex)
                wait = self._soonest_recovery(ex) or 0.0
                if wait > config.max_retry_interval:
                    return self._exhausted(ex)
                rounds_left -= 1
                in_round = 0
                ex.tried.clear()
                await asyncio.sleep(wait)
            assert route is not None
            in_round += 1
            try:
                leg = await self._prepared_leg(ex, route)
            except TranslationError as e:
                self.runtime.pool.release_probe(route.credential, route.model)
                return self._local(ex, 400, str(e))
            if leg.local_answer is not None:
                ex.local = True
                return Answer(200, list(_JSON), body=leg.local_answer)

    async def _attempt(self, ex: Exchange, leg: Leg) -> Answer | int:
        """One try of `leg`: the answer to give, or the status it failed with (0: unreachable)."""
        started = time.perf_counter()
        ex.settled = False
        config = self.runtime.config
        route, cred = leg.route, leg.route.credential
        headers = header_list(ex.client.raw_headers, leg.target, legs.request_headers(leg), len(leg.body))
        proxy = upstream_proxy(cred, config.proxy_url)
        ex.overhead += time.perf_counter() - started
        try:
            response = await self._upstream.send(config, ex.client.method, leg.target.url, headers, leg.body, proxy)
        except UNREACHABLE as e:
            return self._unreachable(ex, route, e, started)
        if config.quota_headers:
            self._observe_quota(cred, response.headers)
        status = response.status
        reason = (response.reason or "").encode("latin-1", "replace")
        if status in _ROTATE:
            try:
                raw = await response.read()
            except UNREACHABLE:
                raw = b""
            finally:
                response.release()
            if status == 401 and cred.oauth and cred.id not in ex.refreshed:
                ex.refreshed.add(cred.id)
                self._record(ex, cred.label, "401, refreshing", started)
                if (fresh := await self.runtime.refresher.after_unauthorized(cred)) is not None:
                    logger.info(f"cliproxy: {cred.label} answered 401; token refreshed, retrying on it")
                    try:
                        retry = await self._prepared_leg(ex, Route(fresh, route.model))
                    except TranslationError as e:
                        return self._local(ex, 400, str(e))
                    return await self._attempt(ex, retry)
            # The retry hints are in the decoded body; the client gets it decoded too.
            body = decoded(raw, response.headers.get("content-encoding"))
            error_headers = self._headers(response, decoded=body is not None)
            body = raw if body is None else body
            self._failed(ex, route, status, retry_hint(response.headers, body))
            kind = "quota" if status == 429 else "auth" if status in (401, 402, 403) else "error"
            self._record(ex, cred.label, str(status), started, kind)
            ex.last_error = Answer(status, error_headers, reason, body)
            return status
        answer_headers = self._headers(response)
        if ex.client.stream and status < 300:
            chunks = response.content.iter_any()
            try:
                # Until the first chunk is here, nothing has reached the client: a stream that
                # dies or ends before it fails over like any other failure.
                first = await anext(chunks, b"")
            except UNREACHABLE as e:
                response.release()
                return self._unreachable(ex, route, e, started)
            if not first:
                response.release()
                return self._empty(ex, route, status, started)
            self._succeeded(ex, route)
            self._record(ex, cred.label, str(status), started)
            # A translated stream's decoder reads its usage anyway; any other is followed.
            ex.scan = UsageScan(leg.upstream) if leg.request is None else None
            return Answer(status, answer_headers, reason, chunks=self._stream(ex, route, response, first, chunks))
        try:
            body = await response.read()
        except UNREACHABLE as e:
            return self._unreachable(ex, route, e, started)
        finally:
            response.release()
        if status < 300 and not body:
            return self._empty(ex, route, status, started)
        if status < 300:
            ex.usage = self._usage(leg, body, response.headers.get("content-encoding"))
        if status < 400:
            self._succeeded(ex, route)
        else:
            self._settle(ex)  # the request's fault, not the credential's
        self._record(ex, cred.label, str(status), started)
        return Answer(status, answer_headers, reason, body)

    async def _stream(
        self,
        ex: Exchange,
        route: Route,
        response: aiohttp.ClientResponse,
        first: bytes,
        chunks: AsyncIterator[bytes],
    ) -> AsyncIterator[bytes]:
        scan = ex.scan
        try:
            if scan is not None:
                scan(first)
            ex.first_byte = time.time()
            yield first
            async for chunk in chunks:
                if scan is not None:
                    scan(chunk)
                yield chunk
        except UNREACHABLE as e:
            # The client has had part of the answer: too late to fail over. The stream ends
            # here, and its last event (the stream callable's) says it was cut.
            ex.cut = f"the upstream connection was lost ({why_unreachable(e)})"
            self._failed(ex, route, 0, None, reason="stream cut off", rest=CUT_STREAM_REST)
        finally:
            response.release()

    @staticmethod
    def _usage(leg: Leg, body: bytes, content_encoding: str | None) -> Usage | None:
        if content_encoding:
            body = decoded(body, content_encoding) or b""
        return usage_from_body(leg.upstream, body)

    def _observe_quota(self, cred: Credential, headers) -> None:
        snapshot = self.runtime.quota.observe(cred.id, headers)
        if snapshot is None:
            return
        rest = self.runtime.pool.observe_quota(cred, snapshot)
        if rest is not None:
            left = rest.until - time.monotonic()
            logger.info(f"cliproxy: {cred.label}: {rest.reason}; resting it {left:.0f}s, until the window resets")

    def _headers(self, response: aiohttp.ClientResponse, *, decoded: bool = False) -> list[tuple[bytes, bytes]]:
        skip = _HOP_BY_HOP | {b"content-encoding"} if decoded else _HOP_BY_HOP
        return [(k, v) for k, v in response.raw_headers if k.lower() not in skip]

    def _record(self, ex: Exchange, label: str, outcome: str, started: float, kind: str = "answered") -> None:
        ex.attempts.append(Attempt(label, outcome, (time.perf_counter() - started) * 1000, kind))

    def _unreachable(self, ex: Exchange, route: Route, e: BaseException, started: float) -> int:
        why = why_unreachable(e)
        logger.info(f"cliproxy: {route.credential.label}: upstream unreachable ({why})")
        self._failed(ex, route, 0, None, reason=f"unreachable: {why}")
        self._record(ex, route.credential.label, f"unreachable ({why})", started, "unreachable")
        return 0

    def _empty(self, ex: Exchange, route: Route, status: int, started: float) -> int:
        # A success with nothing in it is no answer: every API here answers in JSON or events.
        self._failed(ex, route, 502, None, reason=f"HTTP {status} with an empty body")
        self._record(ex, route.credential.label, f"{status}, empty", started, "error")
        return 502

    def _failed(
        self,
        ex: Exchange,
        route: Route,
        status: int,
        hint: float | None,
        *,
        reason: str | None = None,
        rest: float | None = None,
    ) -> float:
        ex.settled = True
        wait = self.runtime.pool.failed(route.credential, route.model, status, hint, reason=reason, rest=rest)
        what = f"HTTP {status}" if status else (reason or "unreachable")
        logger.info(
            f"cliproxy: {route.credential.label} failed for {route.model} ({what}); "
            f"resting it {wait:.0f}s"
        )
        return wait

    def _succeeded(self, ex: Exchange, route: Route) -> None:
        ex.settled = True
        self.runtime.pool.succeeded(route.credential, route.model)

    def _settle(self, ex: Exchange) -> None:
        """The request ends with no verdict on its credential: let another request test it."""
        if not ex.settled and ex.leg is not None:
            ex.settled = True
            self.runtime.pool.release_probe(ex.leg.route.credential, ex.leg.route.model)

    # -- when no credential can answer -----------------------------------------------------------

    def _local(
        self, ex: Exchange, status: int, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> Answer:
        ex.local = True
        ex.code = code
        headers = list(_JSON)
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % max(1, round(retry_after))))
        body = error_body(ex.client.endpoint.format, status, message, code=code, retry_after=retry_after)
        return Answer(status, headers, body=body)

    def _exhausted(self, ex: Exchange) -> Answer:
        """Every credential was tried or is resting: say why, in the client's shape."""
        quota = any(a.kind == "quota" for a in ex.attempts)
        resting = self.runtime.pool.resting(self._candidates(ex))
        if not quota and not any(c.kind == "quota" for _, c, _ in resting):
            last = ex.attempts[-1] if ex.attempts else None
            if last is not None and last.kind != "unreachable" and ex.last_error is not None:
                return ex.last_error  # the upstream's own error says most (converted for the client)
        status, message, code, retry_after = self._unavailable(ex, resting)
        return self._local(ex, status, message, code=code, retry_after=retry_after)

    def _unavailable(
        self, ex: Exchange, resting: list[tuple] | None = None
    ) -> tuple[int, str, str, float | None]:
        """(status, message, code, Retry-After) for a request no credential can serve now:
        429 when quotas are the reason (with the wait), 502 when this request found them
        unreachable, 503 otherwise (resting after failures, tokens that cannot be refreshed)."""
        if resting is None:
            resting = self.runtime.pool.resting(self._candidates(ex))
        reasons: dict[str, str] = {}
        for a in ex.attempts:
            if a.kind != "answered":
                reasons[a.credential] = "rate-limited" if a.kind == "quota" else a.outcome
        quota_waits = []
        for cred, cooldown, left in resting:
            if cooldown.kind == "quota":
                quota_waits.append(left)
            reasons.setdefault(cred.label, self._describe_rest(cooldown, left))
        for why in ex.unusable:
            label, _, what = why.partition(": ")
            reasons.setdefault(label, what)
        for route in ex.routes:
            if self.runtime.pool.is_disabled(route.credential.id):
                reasons.setdefault(route.credential.label, "disabled at run time")
        listed = "; ".join(f"{k}: {v}" for k, v in list(reasons.items())[:_MAX_LISTED])
        if len(reasons) > _MAX_LISTED:
            listed += f"; and {len(reasons) - _MAX_LISTED} more"
        model = ex.client.model
        if quota_waits:
            wait = min(quota_waits)
            return (
                429,
                f"every credential for model {model!r} is rate-limited or unavailable; "
                f"retry in {max(1, round(wait))}s ({listed})",
                "model_cooldown",
                wait,
            )
        if ex.attempts and all(a.kind == "unreachable" for a in ex.attempts if a.kind != "answered"):
            return 502, f"no upstream for model {model!r} could be reached ({listed})", "upstream_unreachable", None
        return (
            503,
            f"no credential for model {model!r} can serve now ({listed or 'none available'})",
            "credentials_unavailable",
            None,
        )

    @staticmethod
    def _describe_rest(cooldown: Cooldown, left: float) -> str:
        if cooldown.kind == "quota" and cooldown.reason.startswith("quota window"):
            return f"{cooldown.reason}, back in {max(1, round(left))}s"
        if cooldown.kind == "quota":
            return f"rate-limited, back in {max(1, round(left))}s"
        return f"{cooldown.reason}, resting {max(1, round(left))}s"

    # -- hooks -----------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.get(flow.id)
        if ex is None or ex.leg is None:
            return
        started = time.perf_counter()
        self._from_relay(flow, ex)
        response = flow.response
        assert response is not None
        if ex.client.stream and response.status_code < 300 and not ex.local:
            leg = ex.leg
            if leg.converts:
                response.stream = ex.watch = legs.stream_translator(leg, ex.client)
                response.headers["content-type"] = legs.stream_content_type(ex.client)
                response.headers.pop("content-length", None)
            else:
                fmt = ex.client.endpoint.format
                sse = fmt is not Format.GEMINI or legs.gemini_sse(ex.client)
                response.stream = TerminalWatch(fmt, sse, lambda: self._cut_short(ex))
        ex.overhead += time.perf_counter() - started
        response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"
        self._name_credential(response, ex)

    def response(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or flow.response is None:
            return
        started = time.perf_counter()
        if not ex.local and not flow.response.stream:
            flow.response = self._converted(ex, flow.response)
        self._annotate(flow, ex)
        ex.overhead += time.perf_counter() - started
        if not flow.response.stream:
            flow.response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"
            self._name_credential(flow.response, ex)
        self._report(flow, ex)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None:
            return
        self._from_relay(flow, ex)
        if ex.leg is not None:
            self._annotate(flow, ex)
        if _client_side(flow):
            if ex.task is not None and not ex.task.done():
                # The relay connection goes with the client: stop spending the credential on it.
                ex.task.cancel()
            self._settle(ex)
        self._report(flow, ex)

    def _cut_short(self, ex: Exchange) -> str | None:
        """A passed-through stream ended without its terminal event."""
        if ex.cut is None and ex.leg is not None:
            # A clean early end is the upstream's fault as much as a lost connection.
            self._failed(ex, ex.leg.route, 0, None, reason="stream ended early", rest=CUT_STREAM_REST)
            ex.cut = "the upstream ended the stream early"
        return ex.cut

    # -- answering in the client's format ------------------------------------------------------

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

    def _annotate(self, flow: http.HTTPFlow, ex: Exchange) -> None:
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

    def _name_credential(self, response: http.Response, ex: Exchange) -> None:
        """`x-cliproxy-credential`, where the config asks for it."""
        where = self.runtime.config.credential_header
        if where == "off" or ex.leg is None or ex.local:
            return
        if where == "all" or ex.client_key != INTERCEPTED:
            response.headers[CREDENTIAL_HEADER] = ex.leg.route.credential.label

    # -- accounting ---------------------------------------------------------------------------

    def _report(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Hand the request's record to whoever keeps usage and logs (once it is over)."""
        if not self.finished:
            return
        now = time.time()
        begun = flow.request.timestamp_start
        leg = ex.leg
        cred = leg.route.credential if leg is not None else None
        response = flow.response
        if response is not None:
            status = response.status_code
        else:
            status = 499 if _client_side(flow) else 502
        usage = self._stream_usage(ex) if response is not None and response.stream else ex.usage
        client = ex.client
        record = UsageRecord(
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
            error=self._error_class(flow, ex, status),
        )
        path = client.path
        for listener in self.finished:
            try:
                listener(record, path)
            except Exception:
                logger.exception("cliproxy: internal error while recording a request")

    @staticmethod
    def _stream_usage(ex: Exchange) -> Usage | None:
        if ex.scan is not None:
            return ex.scan.usage()
        return sane(getattr(ex.watch, "usage", None))

    @staticmethod
    def _error_class(flow: http.HTTPFlow, ex: Exchange, status: int) -> str | None:
        if flow.error is not None:
            return "client_closed" if _client_side(flow) else "proxy_error"
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
