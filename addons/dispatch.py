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
from collections.abc import Callable

from mitmproxy import http

from addons.attempts import CUT_STREAM_REST, Attempts
from addons.common import hide_client_auth
from addons.exchange import INTERCEPTED, Exchange, background
from addons.relay import FLOW_HEADER, PHRASES, Answer, Relay
from addons.report import annotate, client_side, name_credential, usage_record
from routing import legs
from routing.router import Route
from routing.runtime import Runtime
from routing.upstream import ClientRequest
from routing.usage import UsageRecord
from translators.errors import error_body
from translators.formats import Format
from translators.terminal import TerminalWatch

logger = logging.getLogger("cliproxy")

OVERHEAD_HEADER = "x-cliproxy-overhead-ms"
FLOW_HEADER_BYTES = FLOW_HEADER.encode()

# Told of every client request the pool served (or answered itself), once it is over.
Finished = Callable[[UsageRecord, str], None]


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._exchanges: dict[str, Exchange] = {}
        self.attempts = Attempts(runtime)
        self._relay = Relay(self.answer)
        self._relay_started: asyncio.Future | None = None
        # Called with each request's record and the path the client called.
        self.finished: list[Finished] = []

    def running(self) -> None:
        self._start_relay()

    def done(self):
        # Synchronous: mitmproxy calls `done` synchronously when it reloads the script. The
        # returned future is awaited on shutdown.
        return background(asyncio.gather(self._relay.close(), self.attempts.close()))

    def _start_relay(self) -> asyncio.Future:
        if self._relay_started is None:
            self._relay_started = background(self._open_relay())
        return self._relay_started

    async def _open_relay(self) -> None:
        await self._relay.start()
        logger.debug(f"cliproxy: upstream relay on 127.0.0.1:{self._relay.port}")

    # -- the request hook ---------------------------------------------------------------------

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
        ex = Exchange(flow, client, [], client_key=client_key)
        self._exchanges[flow.id] = ex
        ex.overhead += time.perf_counter() - started
        answer = await self.attempts.first_leg(ex, routes)
        if answer is None and not client.stream:
            answer = await self.attempts.answer(ex)
        if answer is not None:
            # mitmproxy sends a response set here as it is, without dialling out: whole answers
            # (the proxy's own included) need no relay.
            flow.response = self._whole_response(answer)
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

    # -- the relay's side ----------------------------------------------------------------------

    async def answer(self, flow_id: str) -> Answer:
        """The answer for the flow the relay was asked about (its `x-cliproxy-flow`)."""
        ex = self._exchanges.get(flow_id)
        if ex is None or ex.task is not None:
            return Answer(404, [(b"content-type", b"text/plain")], body=b"no such flow")
        return await self.attempts.answer(ex)

    # -- hooks -----------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.get(flow.id)
        if ex is None or ex.leg is None or ex.shown is None:
            # Not through the relay: answered whole in the request hook, and mitmproxy calls
            # this hook for such answers too; the response hook finishes them.
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
        name_credential(response, ex, self.runtime.config.credential_header)

    def response(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None or flow.response is None:
            return
        started = time.perf_counter()
        if not ex.local and not flow.response.stream:
            flow.response = self._converted(ex, flow.response)
        annotate(flow, ex)
        ex.overhead += time.perf_counter() - started
        if not flow.response.stream:
            flow.response.headers[OVERHEAD_HEADER] = f"{ex.overhead * 1000:.2f}"
            name_credential(flow.response, ex, self.runtime.config.credential_header)
        self._report_later(flow, ex)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = self._exchanges.pop(flow.id, None)
        if ex is None:
            return
        self._from_relay(flow, ex)
        if ex.leg is not None:
            annotate(flow, ex)
        if client_side(flow):
            if ex.task is not None and not ex.task.done():
                # The relay connection goes with the client: stop spending the credential on it.
                ex.task.cancel()
            self.attempts.settle(ex)
        self._report_later(flow, ex)

    def _cut_short(self, ex: Exchange) -> str | None:
        """A passed-through stream ended without its terminal event."""
        if ex.cut is None and ex.leg is not None:
            # A clean early end is the upstream's fault as much as a lost connection.
            self.attempts.failed(ex, ex.leg.route, 0, None, reason="stream ended early", rest=CUT_STREAM_REST)
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

    # -- accounting ---------------------------------------------------------------------------

    def _report_later(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        # Once mitmproxy has written the answer, which it does as this hook returns: the usage
        # read, the log line and the usage row are not the client's wait.
        if self.finished:
            asyncio.get_running_loop().call_soon(self._report, flow, ex)

    def _report(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        """Hand the request's record to whoever keeps usage and logs (once it is over). Runs in
        a loop callback, outside mitmproxy's guard around hooks: every failure is caught here."""
        try:
            record = usage_record(flow, ex)
        except Exception:
            logger.exception("cliproxy: internal error while recording a request")
            return
        for listener in self.finished:
            try:
                listener(record, ex.client.path)
            except Exception:
                logger.exception("cliproxy: internal error while recording a request")
