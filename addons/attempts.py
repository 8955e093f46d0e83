"""The attempts of one client request: pick a credential, try it, fail over to the next.

Every failure before the client has seen a byte (refused, reset, timed out, a status worth
rotating on, an empty success, a stream that dies before its first chunk) rests the credential
with its reason and moves the request on; when none is left, the answer says why, in the
client's shape. What comes back is an `Answer` for the dispatcher to give mitmproxy: a whole
body, or the chosen upstream's chunks as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp

from addons.exchange import Exchange, Attempt
from addons.images import ImageFetcher
from addons.relay import Answer
from addons.upstream_client import (
    MAX_ANSWER_BYTES,
    MAX_ERROR_BYTES,
    UNREACHABLE,
    UpstreamClient,
    decoded,
    read_capped,
    why_unreachable,
)
from auth.credential import Credential
from auth.pool import Cooldown
from routing import legs
from routing.legs import Leg
from routing.router import Route, UnknownModel
from routing.runtime import Runtime
from routing.upstream import header_list, upstream_proxy
from translators.errors import error_body, retry_hint
from translators.translate import TranslationError
from translators.usage import UsageScan

logger = logging.getLogger("cliproxy")

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


class Attempts:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.upstream = UpstreamClient()
        self.images = ImageFetcher()

    async def close(self) -> None:
        await self.upstream.close()

    async def first_leg(self, ex: Exchange, routes: list[Route] | None) -> Answer | None:
        """Pick the first credential for `ex` and prepare its leg (`ex.leg`); or, when there is
        nothing to send, the proxy's own answer (an unknown model, every credential resting, a
        call the upstream's format cannot carry, a count answered locally)."""
        started = time.perf_counter()
        if routes is None:
            try:
                routes = self.runtime.router.resolve(ex.client.model)
            except UnknownModel as e:
                return self._local(ex, 404, str(e), code="model_not_found")
        ex.routes = routes
        ex.overhead += time.perf_counter() - started
        route = await self.pick_usable(ex)
        config = self.runtime.config
        if route is None and config.request_retry > 0:
            wait = self.soonest_recovery(ex)
            if wait is not None and wait <= config.max_retry_interval:
                await asyncio.sleep(wait)
                route = await self.pick_usable(ex)
        started = time.perf_counter()
        try:
            if route is None:
                status, message, code, retry_after = self.unavailable(ex)
                return self._local(ex, status, message, code=code, retry_after=retry_after)
            prepared = await self._prepare(ex, route)
            return prepared if isinstance(prepared, Answer) else None
        finally:
            ex.overhead += time.perf_counter() - started

    async def _prepare(self, ex: Exchange, route: Route) -> Leg | Answer:
        """The leg to send on `route`, or the proxy's own answer when there is nothing to send
        (a call the upstream's format cannot carry, a count answered locally)."""
        try:
            leg = await self.prepared_leg(ex, route)
        except TranslationError as e:
            self.runtime.pool.release_probe(route.credential, route.model)
            return self._local(ex, 400, str(e))
        if leg.local_answer is not None:
            ex.local = True
            return Answer(200, list(_JSON), body=leg.local_answer)
        return leg

    async def _pick(self, ex: Exchange) -> Route | None:
        candidates = [(r.credential, r.model) for r in ex.routes]
        pool, position = self.runtime.pool, None
        shared = self.runtime.shared_pool
        if shared is not None and pool.rotates(candidates, ex.tried):
            # Instances sharing a store rotate as one: the store holds the cursor.
            position = await shared.position(ex.client.model)
        pick = pool.pick(candidates, ex.client.model, ex.tried, position=position)
        if logger.isEnabledFor(logging.DEBUG):
            for skip in pick.skipped:
                logger.debug(f"cliproxy: {ex.client.model}: skipped {skip.credential.label}: {skip.reason}")
        return None if pick.index is None else ex.routes[pick.index]

    async def pick_usable(self, ex: Exchange) -> Route | None:
        """The next candidate whose token is fresh (refreshed first when it has expired)."""
        while True:
            route = await self._pick(ex)
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

    def soonest_recovery(self, ex: Exchange) -> float | None:
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

    async def prepared_leg(self, ex: Exchange, route: Route) -> Leg:
        """The leg for `route`, with images the upstream cannot fetch fetched and inlined."""
        leg = self._leg(ex, route)
        if leg.translated and logger.isEnabledFor(logging.DEBUG):
            if dropped := legs.dropped_parameters(ex.client, leg):
                logger.debug(f"cliproxy: {leg.description}: dropped {', '.join(dropped)}")
        images = legs.remote_images(leg)
        if not images:
            return leg
        await self.images.inline_all(images, self.images.policy(self.runtime.config.image_fetch))
        ex.leg = legs.plan(ex.client, leg.route, self.runtime.config.upstream_overrides, leg.request)
        return ex.leg

    async def answer(self, ex: Exchange) -> Answer:
        ex.task = asyncio.current_task()
        try:
            answer = await self._attempts(ex)
            if answer.chunks is None:
                ex.first_byte = time.time()
            return answer
        except asyncio.CancelledError:
            self.settle(ex)
            raise
        except Exception as e:
            logger.exception("cliproxy: internal error while sending a request upstream")
            self.settle(ex)
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
                route = await self.pick_usable(ex)
                round_over = route is None or (
                    config.max_retry_credentials and in_round >= config.max_retry_credentials
                )
                if not round_over:
                    break
                if rounds_left <= 0 or status not in _NEW_ROUND:
                    return self._exhausted(ex)
                wait = self.soonest_recovery(ex) or 0.0
                if wait > config.max_retry_interval:
                    return self._exhausted(ex)
                rounds_left -= 1
                in_round = 0
                ex.tried.clear()
                await asyncio.sleep(wait)
            assert route is not None
            in_round += 1
            prepared = await self._prepare(ex, route)
            if isinstance(prepared, Answer):
                return prepared
            leg = prepared

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
            response = await self.upstream.send(config, ex.client.method, leg.target.url, headers, leg.body, proxy)
        except UNREACHABLE as e:
            return self._unreachable(ex, route, e, started)
        if config.quota_headers:
            self._observe_quota(cred, response.headers)
        status = response.status
        reason = (response.reason or "").encode("latin-1", "replace")
        if status in _ROTATE:
            try:
                raw = await read_capped(response, MAX_ERROR_BYTES)
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
                        retry = await self.prepared_leg(ex, Route(fresh, route.model))
                    except TranslationError as e:
                        return self._local(ex, 400, str(e))
                    return await self._attempt(ex, retry)
            # The retry hints are in the decoded body; the client gets it decoded too.
            dropped, raw = raw is None, raw or b""
            body = decoded(raw, response.headers.get("content-encoding"))
            error_headers = self._headers(response, decoded=body is not None)
            body = raw if body is None else body
            self.failed(ex, route, status, retry_hint(response.headers, body))
            kind = "quota" if status == 429 else "auth" if status in (401, 402, 403) else "error"
            self._record(ex, cred.label, str(status), started, kind)
            # An error too large to hold is not relayed: the pool's own answer names the status.
            ex.last_error = None if dropped else Answer(status, error_headers, reason, body)
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
            body = await read_capped(response, MAX_ANSWER_BYTES)
        except UNREACHABLE as e:
            return self._unreachable(ex, route, e, started)
        finally:
            response.release()
        if body is None:
            # Not the credential's fault, and another would likely answer as much: no failover.
            self.settle(ex)
            self._record(ex, cred.label, f"{status}, too large", started, "error")
            return self._local(
                ex, 502, f"the upstream's answer is larger than the {MAX_ANSWER_BYTES >> 20} MiB cliproxy holds "
                "for a whole answer; ask for a stream instead, which has no such limit"
            )
        if status < 300 and not body:
            return self._empty(ex, route, status, started)
        if status < 300:
            ex.whole = (leg.upstream, body, response.headers.get("content-encoding"))
        if status < 400:
            self._succeeded(ex, route)
        else:
            self.settle(ex)  # the request's fault, not the credential's
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
            self.failed(ex, route, 0, None, reason="stream cut off", rest=CUT_STREAM_REST)
        finally:
            response.release()

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
        self.failed(ex, route, 0, None, reason=f"unreachable: {why}")
        self._record(ex, route.credential.label, f"unreachable ({why})", started, "unreachable")
        return 0

    def _empty(self, ex: Exchange, route: Route, status: int, started: float) -> int:
        # A success with nothing in it is no answer: every API here answers in JSON or events.
        self.failed(ex, route, 502, None, reason=f"HTTP {status} with an empty body")
        self._record(ex, route.credential.label, f"{status}, empty", started, "error")
        return 502

    def failed(
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

    def settle(self, ex: Exchange) -> None:
        """The request ends with no verdict on its credential: let another request test it."""
        if not ex.settled and ex.leg is not None:
            ex.settled = True
            self.runtime.pool.release_probe(ex.leg.route.credential, ex.leg.route.model)

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
        status, message, code, retry_after = self.unavailable(ex, resting)
        return self._local(ex, status, message, code=code, retry_after=retry_after)

    def unavailable(
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
