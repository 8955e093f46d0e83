"""The local API listener: client authentication, endpoint recognition and local answers.

A listener request bound upstream leaves here as a `ClientRequest` handed to the dispatcher.
"""

from __future__ import annotations

import json
import logging
import time

from mitmproxy import http

from addons.common import client_request, hide_client_auth, query_of, read_headers, reply, reply_error
from addons.config import ConfigLoader
from addons.dispatch import Dispatcher
from addons.management import Management
from auth.refresh import running_tasks
from routing.client_keys import key_label
from routing.endpoints import Endpoint, Kind, client_key, guess_format, match
from routing.exposure import key_matches
from routing.names import model_problem
from routing.runtime import Runtime
from translators.fields import shown
from translators.formats import Format
from translators.listing import anthropic_models, gemini_model, gemini_models, openai_models

logger = logging.getLogger("cliproxy")

def _authorized(sent: str | None, allowed: tuple[str, ...]) -> bool:
    if not allowed:
        return True
    return sent is not None and key_matches(sent, allowed)


class ApiListener:
    def __init__(
        self,
        runtime: Runtime,
        config_loader: ConfigLoader,
        dispatcher: Dispatcher,
        management: Management | None = None,
    ) -> None:
        self.runtime = runtime
        self.config_loader = config_loader
        self.dispatcher = dispatcher
        self.management = management

    def is_listener_flow(self, flow: http.HTTPFlow) -> bool:
        mode = flow.client_conn.proxy_mode
        return mode is not None and mode.full_spec == self.config_loader.mode_spec

    async def request(self, flow: http.HTTPFlow) -> None:
        began = time.perf_counter()
        if not self.is_listener_flow(flow):
            return
        if flow.response or flow.error or not flow.live:
            hide_client_auth(flow)  # answered before us (RequestLimits' 431 / 413)
            return
        try:
            await self._serve(flow, began)
        except Exception as e:
            # Left alone, the flow would go to the listener's never-dialled default target.
            logger.exception("cliproxy: internal error while routing a request")
            fmt = guess_format(flow.request.path, {k.lower(): v for k, v in flow.request.headers.items()})
            reply_error(flow, fmt, 500, f"internal error in cliproxy ({type(e).__name__}); see the proxy's log")
        finally:
            hide_client_auth(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        # A flow that never reached `request` (the client left while sending it).
        if self.is_listener_flow(flow):
            hide_client_auth(flow)

    async def _serve(self, flow: http.HTTPFlow, began: float) -> None:
        req = flow.request
        headers, raw_headers = read_headers(req.headers)
        path = req.path.split("?", 1)[0]
        if self.management is not None and self.management.handles(path):
            # Its own key, not the api-keys of the pool's clients.
            await self.management.serve(flow, path)
            return
        if req.method == "OPTIONS":
            reply(flow, 204, b"", cors=True)
            return
        endpoint = match(req.method, path, headers)
        fmt = endpoint.format if endpoint else guess_format(path, headers)
        sent = client_key(headers, query_of(req))
        if not _authorized(sent, self.runtime.config.client_keys):
            reply_error(flow, fmt, 401, "missing or invalid API key for this proxy: send one of its api-keys")
            return
        if endpoint is None:
            reply_error(flow, fmt, 404, f"no such endpoint: {req.method} {path}")
            return
        if endpoint.kind is Kind.HEALTH:
            self._health(flow)
        elif endpoint.kind is Kind.LIST_MODELS:
            self._list_models(flow, endpoint)
        elif endpoint.kind is Kind.GET_MODEL:
            self._get_model(flow, endpoint)
        else:
            if call := client_request(flow, endpoint, path, headers, raw_headers):
                label = key_label(sent, self.runtime.config)
                await self.dispatcher.dispatch(flow, call, client_key=label, began=began)

    def _health(self, flow: http.HTTPFlow) -> None:
        count = len(self.runtime.router.credentials)
        body = {
            "status": "ok" if count else "no credentials",
            "credentials": count,
            "auth_files": len(self.runtime.store.credentials()),
            # One, unless a script reload leaked a refresher.
            "refresh_tasks": running_tasks(),
        }
        reply(flow, 200, json.dumps(body).encode())

    def _list_models(self, flow: http.HTTPFlow, endpoint: Endpoint) -> None:
        models = self.runtime.router.models()
        encode = {
            Format.OPENAI_CHAT: openai_models,
            Format.ANTHROPIC: anthropic_models,
            Format.GEMINI: gemini_models,
        }[endpoint.format]
        reply(flow, 200, encode(models))

    def _get_model(self, flow: http.HTTPFlow, endpoint: Endpoint) -> None:
        model = endpoint.model or ""
        if problem := model_problem(model):
            reply_error(flow, Format.GEMINI, 400, f"invalid model {shown(model, 80)}: {problem}")
            return
        for m in self.runtime.router.models():
            if m.id == model:
                reply(flow, 200, json.dumps(gemini_model(m)).encode())
                return
        reply_error(flow, Format.GEMINI, 404, f"model {model!r} is not offered here")
