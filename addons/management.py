"""The management API (`/v0/management/...`) and the status page (`/`, `/status`) on the listener.

CLIProxyAPI's conventions: the key is `remote-management.secret-key`, sent as `Authorization:
Bearer <key>` or `X-Management-Key`; only loopback clients unless `allow-remote`; every route
404s while no key is set. Errors are `{"error": "..."}`. The status page logs in with the same
key (a form, or `?key=` once) and then holds an HttpOnly, SameSite=Strict session cookie, which
opens the read-only routes only.

Nothing secret stays in the flows mitmproxy keeps (mitmweb, saved flows): keys, cookies and
uploaded files are masked in the request before anything else sees it, and the two answers
that carry a secret (a downloaded auth file, a new session cookie) are served through a
loopback relay and streamed, so that mitmproxy never holds their bodies, then masked.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import http

from addons.common import mask, reply
from addons.relay import FLOW_HEADER, Answer, Relay
from auth.tokens import MAX_TOKEN_FILE_BYTES, TokenFileError, read_token_bytes, save_token_file, shown
from routing import management as m
from routing.config import Config
from routing.management import ManagementError
from routing.runtime import Runtime
from routing.status_page import HEADERS as PAGE_HEADERS
from routing.status_page import login_page, status_page

logger = logging.getLogger("cliproxy")

PAGE_PATHS = frozenset({"/", "/status", "/status/login", "/status/logout"})
# Room for a multipart envelope around the largest token file.
MAX_UPLOAD_BYTES = MAX_TOKEN_FILE_BYTES + 64 * 1024
_NOT_KEPT = b"(not kept: it holds a secret)"
_MASKED_HEADERS = ("authorization", "x-management-key")

Handler = Callable[[http.HTTPFlow, "Call"], Awaitable[None]]


@dataclass(slots=True)
class Call:
    method: str
    route: str  # the path under /v0/management
    query: dict[str, str]
    body: bytes
    content_type: str


@dataclass(slots=True)
class _Relayed:
    """An answer waiting for the relay, and the request mitmweb should show meanwhile."""

    answer: Answer
    request: tuple[str, str, int, str, http.Headers, bytes | None]


def _json(flow: http.HTTPFlow, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    reply(flow, status, json.dumps(body).encode(), headers={"cache-control": "no-store", **(headers or {})})


def _error(flow: http.HTTPFlow, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    _json(flow, status, {"error": message}, headers)


def _text(flow: http.HTTPFlow, status: int, message: str) -> None:
    flow.response = http.Response.make(
        status, message.encode(), {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"}
    )


def _page(flow: http.HTTPFlow, status: int, body: bytes) -> None:
    flow.response = http.Response.make(status, body, PAGE_HEADERS)


def _cookie(value: str, max_age: int) -> str:
    return f"{m.SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"


class Management:
    def __init__(
        self,
        runtime: Runtime,
        rescan: Callable[[], None],
    ) -> None:
        self.runtime = runtime
        self.gate = m.Gate()
        self._rescan = rescan
        self._relay = Relay(self._relay_answer)
        self._relay_started: asyncio.Future | None = None
        self._relayed: dict[str, _Relayed] = {}
        self._routes: dict[str, dict[str, Handler]] = {
            "/config": {"GET": self._config},
            "/auth-files": {"GET": self._auth_files, "POST": self._upload, "DELETE": self._delete},
            "/auth-files/download": {"GET": self._download},
            "/auth-files/status": {"PATCH": self._auth_file_status},
            "/credentials": {"GET": self._credentials},
            "/credentials/status": {"PATCH": self._credential_status},
            "/usage": {"GET": self._usage},
            "/errors": {"GET": self._errors},
            "/instances": {"GET": self._instances},
        }
        runtime.config_listeners.append(self._config_applied)
        self._config_applied(runtime.config)

    # -- hooks -------------------------------------------------------------------------------

    def running(self) -> None:
        if self._relay_started is None:
            self._relay_started = asyncio.ensure_future(self._relay.start())

    def done(self):
        if self._config_applied in self.runtime.config_listeners:
            self.runtime.config_listeners.remove(self._config_applied)
        if self._relay_started is None:
            return None
        # Synchronous, as script reloads call it: the relay closes on the loop, and mitmproxy
        # awaits the returned future on shutdown.
        self._relay_started = None
        return asyncio.ensure_future(self._relay.close())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        relayed = self._relayed.get(flow.id)
        if relayed is None or flow.response is None:
            return
        # Streamed: mitmproxy passes the body on without keeping it (unless told to with
        # store_streamed_bodies; `response` then masks it, after it has gone out).
        flow.response.stream = True
        req = flow.request
        req.scheme, req.host, req.port, req.path, req.headers, req.raw_content = relayed.request

    def response(self, flow: http.HTTPFlow) -> None:
        if self._relayed.pop(flow.id, None) is None or flow.response is None:
            return
        flow.response.raw_content = _NOT_KEPT
        if "set-cookie" in flow.response.headers:
            flow.response.headers["set-cookie"] = f"{m.SESSION_COOKIE}=…"

    def error(self, flow: http.HTTPFlow) -> None:
        self._relayed.pop(flow.id, None)

    def _config_applied(self, config: Config) -> None:
        gate = self.gate
        before = (gate.off, gate.allow_remote)
        gate.configure(config.remote_management)
        if (gate.off, gate.allow_remote) != before:
            if gate.off is None:
                logger.info(
                    "cliproxy: management API on /v0/management and status page on / "
                    f"({'any client with the key' if gate.allow_remote else 'loopback clients only'})"
                )
            elif config.remote_management.secret_key:
                logger.warning(f"cliproxy: {gate.off}")

    # -- the listener's entry point ----------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        return path in PAGE_PATHS or path == m.PREFIX or path.startswith(m.PREFIX + "/")

    async def serve(self, flow: http.HTTPFlow, path: str) -> None:
        req = flow.request
        flow.comment = f"cliproxy management: {req.method} {path}"
        headers = {k.lower(): v for k, v in req.headers.items()}
        query = {k: v for k, v in req.query.items()}
        body = req.raw_content or b""
        self._hide_secrets(flow)
        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        try:
            if path in PAGE_PATHS:
                await self._serve_page(flow, path, headers, query, body, peer)
            else:
                await self._serve_api(flow, path, headers, query, body, peer)
        except ManagementError as e:
            _error(flow, e.status, e.message)
        except Exception as e:
            logger.exception("cliproxy: internal error in the management API")
            _error(flow, 500, f"internal error in cliproxy ({type(e).__name__}); see the proxy's log")

    def _hide_secrets(self, flow: http.HTTPFlow) -> None:
        """Mask what the client authenticated with, and the files and keys it sent, in the
        flow mitmproxy keeps; the originals were read before."""
        req = flow.request
        for name in _MASKED_HEADERS:
            if value := req.headers.get(name):
                req.headers[name] = mask(value)
        if "cookie" in req.headers:
            req.headers["cookie"] = f"{m.SESSION_COOKIE}=…"
        if "key" in req.query:
            req.query["key"] = "…"
        if req.raw_content and req.method in ("POST", "PUT"):
            # An uploaded auth file, or the login form's key. PATCH and DELETE bodies name
            # credentials and files only.
            req.raw_content = _NOT_KEPT

    async def _serve_api(
        self, flow: http.HTTPFlow, path: str, headers: dict[str, str], query: dict[str, str], body: bytes, peer: str
    ) -> None:
        route = path[len(m.PREFIX):] or "/"
        methods = self._routes.get(route)
        method = flow.request.method
        if method == "OPTIONS":
            # No CORS headers: the management API is for this machine's tools, not for pages
            # of other origins.
            reply(flow, 204, b"")
            return
        sessions_ok = method == "GET" and route != "/auth-files/download"
        self.gate.admit(peer, m.presented_key(headers), m.session_cookie(headers), sessions_ok=sessions_ok)
        if methods is None:
            raise ManagementError(404, f"no such management route: {method} {path}")
        handler = methods.get(method)
        if handler is None:
            _error(flow, 405, f"{path} takes {', '.join(methods)}", {"allow": ", ".join(methods)})
            return
        await handler(flow, Call(method, route, query, body, headers.get("content-type", "")))

    # -- the status page -----------------------------------------------------------------------

    async def _serve_page(
        self, flow: http.HTTPFlow, path: str, headers: dict[str, str], query: dict[str, str], body: bytes, peer: str
    ) -> None:
        gate = self.gate
        if gate.off is not None:
            _text(flow, 404, f"cliproxy: the status page is off, like {gate.off.removeprefix('the ')}\n")
            return
        if not gate.panel:
            _text(flow, 404, "cliproxy: the status page is off (remote-management.disable-control-panel: true)\n")
            return
        method = flow.request.method
        if path == "/status/logout":
            if session := m.session_cookie(headers):
                gate.close_session(session)
            self._redirect(flow, _cookie("", 0))
            return
        key: str | None = None
        if path == "/status/login":
            if method != "POST":
                self._redirect(flow)
                return
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            key = (form.get("key") or [""])[0]
        elif method != "GET":
            _text(flow, 405, f"{path} takes GET\n")
            return
        elif "key" in query:
            key = query["key"]
        try:
            gate.admit(peer, key, m.session_cookie(headers), sessions_ok=key is None)
        except ManagementError as e:
            if e.status == 401:
                message = "Wrong key." if key is not None else "Enter the management key to see the pool."
                _page(flow, 401, login_page(message))
            else:
                _text(flow, e.status, f"cliproxy: {e.message}\n")
            return
        if key is not None:
            # Logged in: the key leaves the address bar, the session goes into a cookie.
            self._redirect(flow, _cookie(gate.open_session(), int(m.SESSION_SECONDS)))
            return
        _page(flow, 200, status_page())

    def _redirect(self, flow: http.HTTPFlow, cookie: str | None = None) -> None:
        headers = {"location": "/status", "cache-control": "no-store", "content-type": "text/plain; charset=utf-8"}
        if cookie is None:
            flow.response = http.Response.make(303, b"", headers)
            return
        answer = Answer(
            303,
            [(k.encode(), v.encode()) for k, v in {**headers, "set-cookie": cookie}.items()],
            b"See Other",
            b"see /status\n",
        )
        self._through_relay(flow, answer)

    # -- answers that carry a secret ---------------------------------------------------------------

    def _through_relay(self, flow: http.HTTPFlow, answer: Answer) -> None:
        if self._relay_started is None or not self._relay_started.done():
            # Not started (a test harness without `running`): answer directly.
            flow.response = http.Response.make(answer.status, answer.body, answer.headers)
            return
        req = flow.request
        kept = (req.scheme, req.host, req.port, req.path, req.headers.copy(), req.raw_content)
        self._relayed[flow.id] = _Relayed(answer, kept)
        req.scheme = "http"
        req.host = "127.0.0.1"
        req.port = self._relay.port
        req.path = "/"
        req.headers = http.Headers(
            [
                (b"host", b"127.0.0.1:%d" % self._relay.port),
                (FLOW_HEADER.encode(), flow.id.encode()),
                (b"content-length", b"0"),
            ]
        )
        req.raw_content = b""

    async def _relay_answer(self, flow_id: str) -> Answer:
        relayed = self._relayed.get(flow_id)
        if relayed is None:
            return Answer(404, [(b"content-type", b"text/plain")], body=b"no such flow")
        answer, relayed.answer = relayed.answer, Answer(410, [])
        return answer

    # -- routes ----------------------------------------------------------------------------------

    async def _config(self, flow: http.HTTPFlow, call: Call) -> None:
        _json(flow, 200, m.masked_config(self.runtime.config))

    def _directory(self) -> Path:
        directory = self.runtime.store.directory
        if directory is None:
            raise ManagementError(503, "no auth directory is in use yet")
        return directory

    def _rows(self, now: float, hour: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Every credential's row; `hour`: usage by credential over the last hour, if recorded."""
        runtime = self.runtime
        pool, refresher = runtime.pool, runtime.refresher
        # Usage names a credential by its label (what the log and mitmweb show too).
        by_label = {r["key"]: {"requests": r["requests"], "errors": r["errors"]} for r in hour or ()}
        none = None if hour is None else {"requests": 0, "errors": 0}
        rows = []
        for cred in runtime.router.credentials:
            rows.append(
                m.describe(
                    cred,
                    now=now,
                    disabled="management" if pool.is_disabled(cred.id) else None,
                    rests=pool.rests(cred.id),
                    refreshing=cred.oauth and refresher.refreshing(cred),
                    refresh_failure=refresher.failure(cred.id) if cred.oauth else None,
                    quota=runtime.quota.get(cred.id),
                    last_hour=by_label.get(cred.label, none),
                )
            )
        for entry in runtime.store.entries():
            if entry.disabled:
                cred = entry.credential
                rows.append(
                    m.describe(
                        cred, now=now, disabled="file", rests=(), refreshing=False, refresh_failure=None,
                        quota=runtime.quota.get(cred.id), last_hour=by_label.get(cred.label, none),
                    )
                )
        return rows

    async def _credentials(self, flow: http.HTTPFlow, call: Call) -> None:
        now = time.time()
        source = await self._usage_source(required=False)
        hour = None if source is None else await asyncio.to_thread(source[1].query, now - 3600, "credential")
        _json(flow, 200, {"now": now, "credentials": self._rows(now, hour)})

    async def _auth_files(self, flow: http.HTTPFlow, call: Call) -> None:
        now = time.time()
        states = {row["id"]: row for row in self._rows(now)}
        files = []
        for entry in self.runtime.store.entries():
            cred = entry.credential
            row = states.get(cred.id)
            files.append(
                {
                    "name": entry.path.name,
                    "id": cred.id,
                    "type": entry.token.type,
                    "provider": cred.provider,
                    "label": cred.label,
                    "email": cred.email or None,
                    "expires_at": cred.expires_at,
                    # Left out of the pool otherwise (an unusable proxy-url, say): said in the log.
                    "state": row["state"] if row else "unused",
                    "status_message": row["detail"] if row else "not in the pool; see the proxy's log",
                    "disabled": entry.disabled or self.runtime.pool.is_disabled(cred.id),
                    **m.file_stat(entry.path),
                }
            )
        directory = self.runtime.store.directory
        for path, problem in sorted(self.runtime.store.problems().items()):
            if directory is not None and path.parent == directory:
                files.append(
                    {
                        "name": shown(path.name),
                        "id": None,
                        "state": "invalid",
                        "status_message": problem.removeprefix("cliproxy: "),
                        "disabled": False,
                        **m.file_stat(path),
                    }
                )
        _json(flow, 200, {"files": files})

    def _upload_content(self, call: Call) -> tuple[str | None, bytes]:
        """(file name, bytes) of an upload: a multipart form's `file` part, or the raw body."""
        if len(call.body) > MAX_UPLOAD_BYTES:
            raise ManagementError(413, f"an auth file is at most {MAX_TOKEN_FILE_BYTES // 1024 // 1024} MiB")
        name = call.query.get("name")
        if not call.content_type.lower().startswith("multipart/form-data"):
            return name, call.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"content-type: " + call.content_type.encode("latin-1", "replace") + b"\r\n\r\n" + call.body
        )
        if not message.is_multipart():
            raise ManagementError(400, "a multipart upload without parts")
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                return name or part.get_filename(), part.get_payload(decode=True) or b""
        raise ManagementError(400, 'a multipart upload needs a "file" part')

    async def _upload(self, flow: http.HTTPFlow, call: Call) -> None:
        directory = self._directory()
        name, raw = self._upload_content(call)
        token, credential = m.validate_upload(directory, m.auth_file_name(name), raw)
        try:
            await asyncio.to_thread(save_token_file, token)
        except OSError as e:
            raise ManagementError(500, f"the auth file could not be written ({e.strerror or type(e).__name__})") from None
        self._rescan()
        loaded = self.runtime.store.entry(credential.id) is not None
        logger.info(f"cliproxy: auth file {token.path.name} uploaded through the management API")
        _json(flow, 200, {"status": "ok", "name": token.path.name, "id": credential.id, "loaded": loaded})

    def _names(self, call: Call) -> list[str]:
        if "name" in call.query:
            return [m.auth_file_name(call.query["name"])]
        if call.body:
            try:
                body = json.loads(call.body)
            except ValueError:
                raise ManagementError(400, 'the body must be JSON: {"names": [...]}') from None
            names = body.get("names") if isinstance(body, dict) else None
            if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
                return [m.auth_file_name(n) for n in names]
        raise ManagementError(400, 'name the auth file: ?name=<file>.json, or a body {"names": [...]}')

    async def _delete(self, flow: http.HTTPFlow, call: Call) -> None:
        directory = self._directory()
        names = self._names(call)
        missing = [n for n in names if not os.path.lexists(directory / n)]
        if missing:
            raise ManagementError(404, f"no such auth file: {', '.join(shown(n) for n in missing)}")
        for name in names:
            try:
                os.unlink(directory / name)
            except IsADirectoryError:
                raise ManagementError(400, f"{shown(name)} is a directory, not an auth file") from None
            except OSError as e:
                raise ManagementError(500, f"{shown(name)} could not be deleted ({e.strerror})") from None
            logger.info(f"cliproxy: auth file {shown(name)} deleted through the management API")
        self._rescan()
        _json(flow, 200, {"status": "ok", "deleted": names})

    async def _download(self, flow: http.HTTPFlow, call: Call) -> None:
        directory = self._directory()
        name = m.auth_file_name(call.query.get("name"))
        path = directory / name
        if not os.path.lexists(path):
            raise ManagementError(404, f"no such auth file: {shown(name)}")
        real = os.path.realpath(path)
        if os.path.commonpath([real, os.path.realpath(directory)]) != os.path.realpath(directory):
            raise ManagementError(403, f"{shown(name)} links outside the auth directory")
        try:
            raw = await asyncio.to_thread(read_token_bytes, path)
        except TokenFileError as e:
            raise ManagementError(400, str(e).removeprefix(shown(path) + ": ")) from None
        disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(name)
        self._through_relay(
            flow,
            Answer(
                200,
                [
                    (b"content-type", b"application/json"),
                    (b"content-disposition", disposition.encode()),
                    (b"cache-control", b"no-store"),
                ],
                b"OK",
                raw,
            ),
        )

    def _switch(self, credential_id: str, disabled: bool) -> dict[str, Any]:
        if not any(c.id == credential_id for c in self.runtime.router.credentials):
            raise ManagementError(404, f"no credential {credential_id!r} is in the pool")
        pool = self.runtime.pool
        if disabled:
            pool.disable(credential_id)
        else:
            pool.enable(credential_id)
        logger.info(f"cliproxy: credential {credential_id} {'disabled' if disabled else 'enabled'} through the management API")
        return {"status": "ok", "id": credential_id, "disabled": disabled}

    @staticmethod
    def _switch_body(call: Call, key: str) -> tuple[str, bool]:
        try:
            body = json.loads(call.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get(key), str) or not isinstance(body.get("disabled"), bool):
            raise ManagementError(400, f'the body must be {{"{key}": "...", "disabled": true|false}}')
        return body[key], body["disabled"]

    async def _credential_status(self, flow: http.HTTPFlow, call: Call) -> None:
        credential_id, disabled = self._switch_body(call, "id")
        _json(flow, 200, self._switch(credential_id, disabled))

    async def _auth_file_status(self, flow: http.HTTPFlow, call: Call) -> None:
        name, disabled = self._switch_body(call, "name")
        name = m.auth_file_name(name)
        entry = next((e for e in self.runtime.store.entries() if e.path.name == name), None)
        if entry is None:
            raise ManagementError(404, f"no auth file {shown(name)} is loaded")
        if entry.disabled:
            raise ManagementError(409, f'{shown(name)} is disabled in the file itself ("disabled": true): edit the file')
        _json(flow, 200, {**self._switch(entry.credential.id, disabled), "name": name})

    async def _usage_source(self, required: bool = True) -> tuple[str, Any] | None:
        """Where usage queries read: every instance's rows ("shared") while the state store
        can be read, else this instance's database ("local"); None (or a 404 when `required`)
        when neither is there."""
        view = self.runtime.usage_view
        if view is not None and await view.refresh():
            return "shared", view
        if self.runtime.usage is not None:
            return "local", self.runtime.usage
        if required:
            raise ManagementError(404, "usage is not recorded: usage-db is off in config.yaml")
        return None

    async def _usage(self, flow: http.HTTPFlow, call: Call) -> None:
        now = time.time()
        since = m.usage_since(call.query.get("since"), now, default=m.USAGE_DEFAULT_SPAN)
        by = m.usage_group(call.query.get("by"))
        bucket = m.usage_bucket(call.query.get("bucket"), now - since)
        source, store = await self._usage_source()
        rows = await asyncio.to_thread(store.query, since, by, bucket)
        body = {"since": since, "until": now, "by": by, "bucket_seconds": bucket, "source": source, "rows": rows}
        if source == "shared":
            body["instances"] = await asyncio.to_thread(store.instances, since)
        _json(flow, 200, body)

    async def _instances(self, flow: http.HTTPFlow, call: Call) -> None:
        """The instances sharing this one's state store (their heartbeats), or this one alone."""
        store, heartbeat = self.runtime.shared, self.runtime.heartbeat
        if store is None or heartbeat is None:
            _json(flow, 200, {"shared": False, "store": None, "connected": False, "instances": []})
            return
        listed = await heartbeat.instances()
        _json(
            flow,
            200,
            {
                "shared": True,
                "store": store.address,
                "connected": store.up,
                "instance": store.instance,
                "instances": listed or [],
            },
        )

    async def _errors(self, flow: http.HTTPFlow, call: Call) -> None:
        limit = m.bounded_int(call.query.get("limit"), "limit", default=50, most=m.MAX_ERRORS_LISTED)
        source, store = await self._usage_source()
        rows = await asyncio.to_thread(store.recent_errors, limit)
        _json(flow, 200, {"source": source, "errors": rows})
