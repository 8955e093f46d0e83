"""Transparent interception: a vendor CLI behind HTTPS_PROXY is served by the pool.

Only the vendor API hosts in `interception.hosts` are TLS-intercepted (mitmproxy's
`allow_hosts`); everything else, the CLIs' own login and token endpoints included, tunnels
through untouched. An intercepted call keeps the CLI's body and headers; the dispatcher swaps
the credential (and translates, when the model is routed to another provider).
"""

from __future__ import annotations

import logging
import re
import time

from mitmproxy import http

from addons.common import client_request, hide_client_auth, read_headers, reply_error
from addons.dispatch import Dispatcher
from routing.config import Config
from routing.endpoints import Kind, guess_format, match
from routing.names import path_problem
from routing.router import UnknownModel
from routing.runtime import Runtime
from routing.upstream import redirect
from translators.formats import Format

logger = logging.getLogger("cliproxy")

# Vendor paths that differ from the listener's: the Codex backend serves Responses under its
# own prefix.
_PATH_ALIASES = {
    ("chatgpt.com", "/backend-api/codex/responses"): "/v1/responses",
}


# Model APIs a client may try to open as a websocket.
_WEBSOCKET_MODEL_PATHS = frozenset({"/v1/responses"})


def allow_hosts(config: Config, listener_host: str) -> list[str]:
    """mitmproxy `allow_hosts` patterns: the intercepted hosts, and the listener's own target
    (its reverse-proxy connections are judged by the same option)."""
    hosts = [*config.interception.hosts, listener_host]
    return [rf"^{re.escape(host)}:\d+$" for host in hosts]


class Interceptor:
    def __init__(self, runtime: Runtime, dispatcher: Dispatcher, is_listener_flow) -> None:
        self.runtime = runtime
        self.dispatcher = dispatcher
        self.is_listener_flow = is_listener_flow
        self._reported: set[tuple[str, str]] = set()
        # Flows sent on with the CLI's own credential, masked in the flow once it has left.
        self._passed: set[str] = set()

    async def request(self, flow: http.HTTPFlow) -> None:
        began = time.perf_counter()
        if flow.error or not flow.live or self.is_listener_flow(flow):
            return
        host = flow.request.pretty_host.lower()
        if host not in self.runtime.config.interception.hosts:
            return
        try:
            if not flow.response:
                await self._serve(flow, host, began)
        finally:
            if flow.response is not None:
                # Answered here (refused, or by the size limits before): the CLI's own key
                # went nowhere and stays out of the flow mitmproxy keeps.
                hide_client_auth(flow)

    async def _serve(self, flow: http.HTTPFlow, host: str, began: float) -> None:
        path = flow.request.path.split("?", 1)[0]
        path = _PATH_ALIASES.get((host, path), path)
        headers, raw_headers = read_headers(flow.request.headers)
        if path in _WEBSOCKET_MODEL_PATHS and headers.get("upgrade", "").lower() == "websocket":
            # Codex opens its Responses websocket first. Passed on, the whole turn would run
            # over it, outside the pool and on the CLI's own key; refused, Codex falls back to
            # the HTTPS call the pool serves.
            reply_error(flow, Format.OPENAI_RESPONSES, 404, "cliproxy serves this API over HTTPS only")
            return
        if problem := path_problem(flow.request.path.split("?", 1)[0]):
            # Passed on, `upstream-overrides` would glue this path onto a gateway's base path,
            # which a dot segment climbs out of; no vendor API has such paths.
            reply_error(flow, guess_format(path, headers, host), 400, f"cliproxy refuses this call: {problem}")
            return
        endpoint = match(flow.request.method, path, headers)
        if endpoint is None or endpoint.kind not in (Kind.GENERATE, Kind.COUNT_TOKENS):
            self.pass_through(flow)  # not a model call: the vendor answers the CLI itself
            return
        call = client_request(flow, endpoint, path, headers, raw_headers)
        if call is None:
            return
        try:
            routes = self.runtime.router.resolve(call.model)
        except UnknownModel:
            self._no_credential(flow, host, call.model, endpoint.format)
            return
        await self.dispatcher.dispatch(flow, call, routes, began=began)

    def _no_credential(self, flow: http.HTTPFlow, host: str, model: str, fmt: Format) -> None:
        refuse = self.runtime.config.interception.no_credential == "refuse"
        if (host, model) not in self._reported:
            self._reported.add((host, model))
            what = "refusing it" if refuse else "passing it through with the CLI's own credential"
            logger.info(f"cliproxy: no pool credential serves {model!r} for {host}; {what}")
        if refuse:
            reply_error(
                flow,
                fmt,
                403,
                f"cliproxy: no pool credential serves model {model!r}, and interception.no-credential is refuse",
            )
            return
        self.pass_through(flow)

    def pass_through(self, flow: http.HTTPFlow) -> None:
        """Send the call on as the CLI made it; `upstream-overrides` still apply."""
        url = redirect(flow.request.url, self.runtime.config.upstream_overrides)
        if url != flow.request.url:
            flow.request.url = url
        self._passed.add(flow.id)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # The request has left: the CLI's own key is no longer needed in the flow.
        if flow.id in self._passed:
            hide_client_auth(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._passed.discard(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.id in self._passed:
            self._passed.discard(flow.id)
            hide_client_auth(flow)
