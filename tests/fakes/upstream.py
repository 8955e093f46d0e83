"""A fake LLM upstream speaking four vendors' wire formats on one local port.

One asyncio HTTP/1.1 server (stdlib only) that answers like OpenAI Chat Completions, OpenAI Responses,
Anthropic Messages and the Gemini API, closely enough that the official SDKs parse its replies. It is
used by unit tests (scripted failures, recorded requests) and by benchmarks, so the hot path avoids
per-request work that is not needed: keep-alive connections, one write per non-stream reply, one
chunk (and one drain) per stream event.

It runs its own event loop in a daemon thread, so synchronous tests, async tests (with their own
loop) and a mitmproxy instance under test can all talk to it at once.

Determinism, which tests may rely on:
* input/prompt tokens = max(1, len(request body) // 4), also what the count-tokens routes return;
* output/completion tokens = the number of text deltas a stream would have (``stream_events``),
  for non-stream replies too;
* a stream's text is ``expected_stream_text(events)``: ``text`` partitioned into ``events``
  non-empty pieces (repeated first when it is shorter than ``events``).

Per-request overrides (request headers): ``x-fake-events: N``, ``x-fake-event-delay: seconds``,
``x-fake-latency: seconds``.

Extra response headers (a vendor's rate-limit headers, say), per API key with ``add_headers``,
on every answer to that key, failures included, until clear().

Connection faults (``fault``), per API key: reset the connection instead of answering, close it
before the headers, never answer, die (reset) after N frames of the answer, or end the answer
cleanly after N frames, its terminal events never sent.

Scripted tool use (Anthropic Messages only, see ``script_tool_use``): a request whose last user
message contains a trigger text is answered with a ``tool_use`` block; the request carrying that
block's ``tool_result`` is answered with a final text.

Scripted replies (``script_reply``): the next request to a vendor is answered with exactly the
body, or the stream events, a test wrote (a vendor's documented shapes, edge cases included).

Gemini CLI's Code Assist API is served too (``POST /v1internal:{generateContent|
streamGenerateContent|countTokens}``, body ``{model, project, request}``): the Gemini answers,
each wrapped as ``{response, traceId}``; ``:loadCodeAssist`` answers a free-tier account with
project ``fake-project``. ``authorize`` (optional) is called with each recorded
request and may return a status to fail it with (an OAuth fake rejecting unknown tokens).

Model listings (``GET .../models`` in each vendor's shape, with Anthropic's ``after_id`` and
Gemini's ``pageToken`` paging; the Codex backend's ``GET /models?client_version=``; Antigravity's
``POST /v1internal:fetchAvailableModels``) are kept in ``listing_requests``, not ``requests``, and
no ``fail``/``fault`` script applies to them: ``set_listing`` says, per API key, which models to
list, in pages of which size, or which status (or a hang) to answer with instead.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

__all__ = ["FakeUpstream", "Recorded", "Vendor", "split_text"]

Vendor = Literal["openai-chat", "openai-responses", "anthropic", "gemini"]

# Request heads beyond this are a client bug, not something to buffer.
_HEAD_LIMIT = 1 << 20
_CREATED = 1_700_000_000

# Gemini routes, including Vertex-style prefixes (…/publishers/google/models/m:generateContent).
_GEMINI_ROUTE = re.compile(r"/models/(?P<model>[^/:]+):(?P<action>generateContent|streamGenerateContent|countTokens)$")
_CODE_ASSIST_ROUTE = re.compile(r"/v1internal:(?P<action>generateContent|streamGenerateContent|countTokens)$")

_OPENAI_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}
_ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    # Anthropic's own overload status is 529; 503 is what proxies map it to, so both mean overloaded.
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_ERROR_STATUSES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str  # as sent (not percent-decoded), without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes  # de-chunked
    api_key: str | None
    vendor: str  # a Vendor value
    received_at: float  # time.monotonic() once the body was read

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    body: bytes | None
    remaining: int | None  # None = until clear()


Fault = Literal["reset", "close", "hang", "die", "early_end"]


@dataclass
class _Fault:
    kind: Fault
    after: int  # frames of the answer sent first (die, early_end)
    remaining: int | None


@dataclass
class _ToolScript:
    trigger: str
    name: str
    input: dict[str, Any]
    answer: str  # "{result}" is replaced by the tool result's text


@dataclass
class _Listing:
    models: list[str] | None  # None: the vendor's default list
    page_size: int | None
    status: int | None
    hang: bool


_DEFAULT_LISTINGS: dict[str, tuple[str, ...]] = {
    "gemini": ("gemini-2.5-pro", "gemini-2.5-flash"),
    "anthropic": ("claude-sonnet-4-5", "claude-opus-4-1"),
    "openai": ("gpt-4o", "gpt-5"),
}


@dataclass
class _Canned:
    body: Any  # the whole answer, for a request that does not stream
    events: list[Any] | None  # the stream's payloads (bytes: written as they are)


@dataclass
class _Settings:
    """Knobs resolved per request (instance defaults, then x-fake-* headers)."""

    events: int
    event_delay: float
    latency: float


# A stream is a sequence of frames; `delayed` frames (the text deltas) are preceded by event_delay.
_Frame = tuple[bytes, bool]


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    frames: Iterator[_Frame] | None = None  # set for streamed (chunked) replies


def split_text(text: str, n: int) -> list[str]:
    """Partition `text` into `n` contiguous, non-empty pieces (repeating it if it is too short)."""
    n = max(1, n)
    if not text:
        return [""] * n
    if len(text) < n:
        text = text * -(-n // len(text))
    size, extra = divmod(len(text), n)
    pieces: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(obj: Any, event: str | None = None) -> bytes:
    data = b"data: " + _dumps(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _extract_api_key(headers: dict[str, str], query: dict[str, str]) -> str | None:
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if "x-goog-api-key" in headers:
        return headers["x-goog-api-key"]
    return query.get("key")


def _classify(path: str, headers: dict[str, str]) -> Vendor:
    """Which vendor a request is addressed to; also decides the error shape of scripted failures."""
    if (
        _GEMINI_ROUTE.search(path)
        or _CODE_ASSIST_ROUTE.search(path)
        or path.startswith("/v1beta")
        or "x-goog-api-key" in headers
    ):
        return "gemini"
    if path.endswith(("/messages", "/messages/count_tokens")) or "anthropic-version" in headers:
        return "anthropic"
    if path.endswith("/responses"):
        return "openai-responses"
    return "openai-chat"


class FakeUpstream:
    """Fake OpenAI / Anthropic / Gemini upstream on 127.0.0.1, running in a background thread."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        stream_events: int = 5,
        event_delay: float = 0.0,
        text: str = "Hello from the fake upstream",
    ) -> None:
        # Plain attributes: tests may change them between requests.
        self.latency = latency
        self.stream_events = stream_events
        self.event_delay = event_delay
        self.text = text
        self.base_url = ""
        self.port = 0
        self.requests: list[Recorded] = []
        self.listing_requests: list[Recorded] = []
        self._listings: dict[str | None, _Listing] = {}
        self.last_event_sent_at: float | None = None
        self.connections_opened = 0  # lets tests/benchmarks check that clients reuse connections
        # Called with each request (a Recorded); a status it returns fails the request.
        self.authorize: Callable[[Recorded], int | None] | None = None
        self._failures: dict[str, list[_Failure]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._tool_scripts: list[_ToolScript] = []
        self._tool_calls: dict[str, _ToolScript] = {}  # tool_use ids handed out -> their script
        self._canned: dict[str, list[_Canned]] = {}
        self._extra_headers: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()  # fail()/clear() run on the caller's thread, lookups on the loop's
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Keep-alive connections would otherwise keep Server.wait_closed() (3.12+) waiting forever.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------------ scripting

    def fail(
        self,
        api_key: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        times: int | None = None,
    ) -> None:
        """Answer requests carrying `api_key` with `status` and the vendor's error body.

        Failures scripted for the same key queue up: the first applies until it has been used `times`
        times, then the next one. `times=None` never runs out (until clear()); `times<=0` is a no-op.
        """
        if times is not None and times <= 0:
            return
        with self._lock:
            self._failures.setdefault(api_key, []).append(_Failure(status, dict(headers or {}), body, times))

    def fault(self, api_key: str, kind: Fault, *, after: int = 0, times: int | None = None) -> None:
        """Break the connection of requests carrying `api_key` (see the module docstring).

        `after` is the number of frames (body bytes, for a non-stream answer) sent before `die`
        or `early_end` strikes. Queued and counted like `fail`."""
        if times is not None and times <= 0:
            return
        with self._lock:
            self._faults.setdefault(api_key, []).append(_Fault(kind, after, times))

    def script_tool_use(self, trigger: str, name: str, input: dict[str, Any], answer: str) -> None:
        """Have the Anthropic route ask for a tool, then answer once it has the tool's result.

        A Messages request whose last user message has a text block containing `trigger` gets an
        assistant turn with one ``tool_use`` block (`name`, `input`, stop_reason ``tool_use``). The
        request whose last user message carries the ``tool_result`` for that block gets `answer`,
        with ``{result}`` replaced by the result's text. Until clear().
        """
        with self._lock:
            self._tool_scripts.append(_ToolScript(trigger, name, dict(input), answer))

    def script_reply(self, vendor: Vendor, *, body: Any = None, events: list[Any] | None = None) -> None:
        """Answer the next request to `vendor` with `body` (JSON) or, if it streams, `events`:
        each a payload written in the vendor's framing (`event:` lines for Anthropic and
        Responses, `data: [DONE]` after a chat stream), or bytes written as they are. Once."""
        with self._lock:
            self._canned.setdefault(vendor, []).append(_Canned(body, events))

    def set_listing(
        self,
        api_key: str | None = None,
        models: list[str] | None = None,
        *,
        page_size: int | None = None,
        status: int | None = None,
        hang: bool = False,
    ) -> None:
        """Answer model listings asked with `api_key` (None: with any key not set on its own)
        with `models` (None: the vendor's default list), `page_size` to a page, or with
        `status` and the vendor's error body, or never (`hang`). Until clear()."""
        with self._lock:
            self._listings[api_key] = _Listing(None if models is None else list(models), page_size, status, hang)

    def add_headers(self, api_key: str, headers: dict[str, str]) -> None:
        """Send `headers` with every answer to requests carrying `api_key` (replacing those
        added before for it)."""
        with self._lock:
            self._extra_headers[api_key] = dict(headers)

    def clear(self) -> None:
        with self._lock:
            self._extra_headers.clear()
            self._canned.clear()
            self._failures.clear()
            self._faults.clear()
            self._tool_scripts.clear()
            self._tool_calls.clear()
            self._listings.clear()
        self.requests.clear()
        self.listing_requests.clear()
        self.last_event_sent_at = None

    def keys_used(self) -> list[str | None]:
        return [r.api_key for r in self.requests]

    def expected_stream_text(self, events: int | None = None) -> str:
        """What a stream of `events` deltas (default: stream_events) spells out."""
        return "".join(split_text(self.text, self.stream_events if events is None else events))

    def _take_failure(self, api_key: str | None) -> _Failure | None:
        return self._take(self._failures, api_key)

    def _take(self, scripts: dict[str, list[Any]], api_key: str | None) -> Any:
        if api_key is None:
            return None
        with self._lock:
            queue = scripts.get(api_key)
            if not queue:
                return None
            script = queue[0]
            if script.remaining is not None:
                script.remaining -= 1
                if script.remaining <= 0:
                    queue.pop(0)
            return script

    # ------------------------------------------------------------------ HTTP plumbing

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)  # type: ignore[arg-type]
        self.connections_opened += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-stream
        except asyncio.CancelledError:
            # stop() cancels open connections. Ending normally matters: on 3.11 asyncio's
            # client_connected_cb wrapper calls task.exception() and logs a cancelled task as an error.
            pass
        finally:
            self._connections.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; returns whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # clean close between requests
        except asyncio.LimitOverrunError:
            await self._write_reply(writer, _bad_request("Request header too large", 431), False)
            return False
        lines = head.lstrip(b"\r\n").decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._write_reply(writer, _bad_request("Malformed request line"), False)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value

        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        else:
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""

        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)

        path, _, query_string = target.partition("?")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        vendor = _classify(unquote(path), headers)
        api_key = _extract_api_key(headers, query)
        recorded = Recorded(method, path, query, headers, body, api_key, vendor, time.monotonic())
        if _is_listing(method, unquote(path)):
            return await self._serve_listing(recorded, reader, writer, keep_alive)
        self.requests.append(recorded)

        settings = self._settings(headers)
        fault: _Fault | None = self._take(self._faults, api_key)
        if fault is not None and fault.kind in ("reset", "close", "hang"):
            if fault.kind == "hang":
                await reader.read()  # until the client gives up
            elif fault.kind == "reset":
                _reset(writer)
            return False
        failure = self._take_failure(api_key)
        if failure is None and self.authorize is not None and (status := self.authorize(recorded)):
            failure = _Failure(status, {}, None, None)
        try:
            reply = _failure_reply(failure, vendor) if failure else self._route(recorded, settings)
        except Exception as exc:  # noqa: BLE001 - a malformed body must get a 400, not kill the connection
            reply = _bad_request(f"fake upstream could not handle the request: {exc!r}")
        if self._extra_headers and (extra := self._extra_headers.get(api_key or "")):
            reply.headers = {**reply.headers, **extra}
        if settings.latency > 0:
            await asyncio.sleep(settings.latency)
        if fault is not None:
            await self._write_broken_reply(writer, reply, fault, settings.event_delay)
            return False
        await self._write_reply(writer, reply, keep_alive, settings.event_delay)
        return keep_alive

    def _settings(self, headers: dict[str, str]) -> _Settings:
        def override(name: str, default: float) -> float:
            try:
                return float(headers[name])
            except (KeyError, ValueError):
                return default

        return _Settings(
            events=max(1, int(override("x-fake-events", self.stream_events))),
            event_delay=override("x-fake-event-delay", self.event_delay),
            latency=override("x-fake-latency", self.latency),
        )

    async def _write_reply(
        self, writer: asyncio.StreamWriter, reply: _Reply, keep_alive: bool, event_delay: float = 0.0
    ) -> None:
        head = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}", f"Content-Type: {reply.content_type}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if not keep_alive:
            head.append("Connection: close")
        if reply.frames is None:
            head.append(f"Content-Length: {len(reply.body)}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
            await writer.drain()
            return
        head += ["Transfer-Encoding: chunked", "Cache-Control: no-cache"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        for data, delayed in reply.frames:
            if delayed and event_delay > 0:
                await asyncio.sleep(event_delay)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()  # each event leaves now, so clients (and proxies) see it incrementally
            self.last_event_sent_at = time.monotonic()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _write_broken_reply(
        self, writer: asyncio.StreamWriter, reply: _Reply, fault: _Fault, event_delay: float
    ) -> None:
        """The start of `reply`, then a reset (die) or a clean end of the body (early_end)."""
        head = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}", f"Content-Type: {reply.content_type}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        head.append("Connection: close")  # as a server that closes after an answer says
        if reply.frames is None:
            body = reply.body[: fault.after]
            length = len(reply.body) if fault.kind == "die" else len(body)
            head.append(f"Content-Length: {length}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        else:
            head.append("Transfer-Encoding: chunked")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for data, delayed in itertools.islice(reply.frames, fault.after):
                if delayed and event_delay > 0:
                    await asyncio.sleep(event_delay)
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                self.last_event_sent_at = time.monotonic()
            if fault.kind == "early_end":
                writer.write(b"0\r\n\r\n")
        await writer.drain()
        if fault.kind == "die":
            _reset(writer)

    # ------------------------------------------------------------------ routes

    def _route(self, req: Recorded, s: _Settings) -> _Reply:
        path = unquote(req.path)
        route = _classify(path, {})  # the API the path calls, whatever headers came along
        with self._lock:
            queue = self._canned.get(route)
            canned = queue.pop(0) if queue and req.method == "POST" else None
        if canned is not None:
            return _canned_reply(canned, req, path, route)
        if req.method == "POST":
            if path.endswith("/chat/completions"):
                return self._chat(req, s)
            if path.endswith("/responses"):
                return self._responses(req, s)
            if path.endswith("/messages/count_tokens"):
                return _Reply(200, _dumps({"input_tokens": _input_tokens(req)}))
            if path.endswith("/messages"):
                return self._anthropic(req, s)
            if match := _GEMINI_ROUTE.search(path):
                return self._gemini(req, s, match["model"], match["action"])
            if match := _CODE_ASSIST_ROUTE.search(path):
                return self._code_assist(req, s, match["action"])
            if path.endswith("/v1internal:loadCodeAssist"):
                tier = {"id": "free-tier", "name": "Gemini Code Assist for individuals"}
                return _Reply(200, _dumps({"currentTier": tier, "cloudaicompanionProject": "fake-project"}))
        return _bad_request(f"Invalid URL ({req.method} {req.path})", 404)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):08d}"

    async def _serve_listing(
        self, req: Recorded, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep_alive: bool
    ) -> bool:
        self.listing_requests.append(req)
        with self._lock:
            listing = self._listings.get(req.api_key) or self._listings.get(None) or _Listing(None, None, None, False)
        if listing.hang:
            await reader.read()  # until the client gives up
            return False
        if listing.status is not None:
            reply = _failure_reply(_Failure(listing.status, {}, None, None), req.vendor)
        elif self.authorize is not None and (status := self.authorize(req)):
            reply = _failure_reply(_Failure(status, {}, None, None), req.vendor)
        else:
            reply = self._list_models(req, listing)
        await self._write_reply(writer, reply, keep_alive, 0.0)
        return keep_alive

    def _list_models(self, req: Recorded, listing: _Listing) -> _Reply:
        path = unquote(req.path)
        if path.endswith(":fetchAvailableModels"):
            models = listing.models if listing.models is not None else list(_DEFAULT_LISTINGS["gemini"])
            return _Reply(200, _dumps({"models": {m: {"displayName": m} for m in models}}))
        if "client_version" in req.query:  # the ChatGPT Codex backend
            models = listing.models if listing.models is not None else list(_DEFAULT_LISTINGS["openai"])
            return _Reply(200, _dumps({"models": [{"slug": m, "display_name": m, "visibility": "list"} for m in models]}))
        vendor = "openai" if req.vendor.startswith("openai") else req.vendor
        models = listing.models if listing.models is not None else list(_DEFAULT_LISTINGS[vendor])
        if vendor == "gemini":
            size = listing.page_size or int(req.query.get("pageSize") or 50)
            start = int(req.query.get("pageToken") or 0)
            page = models[start : start + size]
            body: dict[str, Any] = {
                "models": [
                    {
                        "name": f"models/{m}",
                        "version": "001",
                        "displayName": m,
                        "inputTokenLimit": 1_048_576,
                        "outputTokenLimit": 65_536,
                        # An embedder lists embedContent only: not a model to chat with.
                        "supportedGenerationMethods": (
                            ["embedContent"] if "embedding" in m else ["generateContent", "countTokens"]
                        ),
                    }
                    for m in page
                ]
            }
            if start + size < len(models):
                body["nextPageToken"] = str(start + size)
            return _Reply(200, _dumps(body))
        if vendor == "anthropic":
            size = listing.page_size or int(req.query.get("limit") or 20)
            after = req.query.get("after_id")
            start = models.index(after) + 1 if after in models else 0
            page = models[start : start + size]
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in page]
            return _Reply(
                200,
                _dumps(
                    {
                        "data": data,
                        "has_more": start + size < len(models),
                        "first_id": data[0]["id"] if data else None,
                        "last_id": data[-1]["id"] if data else None,
                    }
                ),
            )
        data = [{"id": m, "object": "model", "created": _CREATED, "owned_by": "fake"} for m in models]
        return _Reply(200, _dumps({"object": "list", "data": data}))

    # --- OpenAI Chat Completions

    def _chat(self, req: Recorded, s: _Settings) -> _Reply:
        body = req.json()
        model = body.get("model") or "fake-model"
        cid = self._next_id("chatcmpl-")
        usage = _openai_chat_usage(_input_tokens(req), s.events)
        headers = {"x-request-id": self._next_id("req_")}
        if not body.get("stream"):
            completion = {
                "id": cid,
                "object": "chat.completion",
                "created": _CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.text, "refusal": None, "annotations": []},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
            return _Reply(200, _dumps(completion), headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pieces = split_text(self.text, s.events)

        def frames() -> Iterator[_Frame]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                obj: dict[str, Any] = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
                if include_usage:
                    obj["usage"] = None  # as OpenAI does: every chunk has the key once usage is requested
                return _sse(obj)

            yield chunk({"role": "assistant", "content": "", "refusal": None}), False
            for piece in pieces:
                yield chunk({"content": piece}), True
            yield chunk({}, "stop"), False
            if include_usage:
                yield _sse(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": _CREATED,
                        "model": model,
                        "service_tier": "default",
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                ), False
            yield b"data: [DONE]\n\n", False

        return _Reply(200, headers=headers, content_type="text/event-stream; charset=utf-8", frames=frames())

    # --- OpenAI Responses

    def _responses(self, req: Recorded, s: _Settings) -> _Reply:
        body = req.json()
        rid = self._next_id("resp_")
        mid = self._next_id("msg_")
        input_tokens = _input_tokens(req)
        headers = {"x-request-id": self._next_id("req_")}

        def response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": float(_CREATED),
                "status": status,
                "background": False,
                "completed_at": float(_CREATED) if status == "completed" else None,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "max_tool_calls": None,
                "model": body.get("model") or "fake-model",
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "prompt_cache_key": None,
                "reasoning": {"effort": None, "summary": None},
                "safety_identifier": None,
                "service_tier": "default",
                "store": body.get("store", True),
                "temperature": 1.0,
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": "auto",
                "tools": [],
                "top_logprobs": 0,
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage,
                "user": None,
                "metadata": {},
            }

        def part(text: str) -> dict[str, Any]:
            return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

        def message(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
            return {"type": "message", "id": mid, "role": "assistant", "status": status, "content": content}

        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": s.events,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + s.events,
        }
        if not body.get("stream"):
            done = response("completed", [message("completed", [part(self.text)])], usage)
            return _Reply(200, _dumps(done), headers)

        pieces = split_text(self.text, s.events)
        full = "".join(pieces)

        def frames() -> Iterator[_Frame]:
            seq = itertools.count()

            def event(type_: str, **fields: Any) -> bytes:
                return _sse({"type": type_, "sequence_number": next(seq), **fields}, event=type_)

            where = {"item_id": mid, "output_index": 0, "content_index": 0}
            yield event("response.created", response=response("in_progress", [], None)), False
            yield event("response.in_progress", response=response("in_progress", [], None)), False
            yield event("response.output_item.added", output_index=0, item=message("in_progress", [])), False
            yield event("response.content_part.added", **where, part=part("")), False
            for piece in pieces:
                yield event("response.output_text.delta", **where, delta=piece, logprobs=[]), True
            yield event("response.output_text.done", **where, text=full, logprobs=[]), False
            yield event("response.content_part.done", **where, part=part(full)), False
            done_item = message("completed", [part(full)])
            yield event("response.output_item.done", output_index=0, item=done_item), False
            yield event("response.completed", response=response("completed", [done_item], usage)), False

        return _Reply(200, headers=headers, content_type="text/event-stream; charset=utf-8", frames=frames())

    # --- Anthropic Messages

    def _anthropic(self, req: Recorded, s: _Settings) -> _Reply:
        body = req.json()
        model = body.get("model") or "fake-model"
        input_tokens = _input_tokens(req)
        headers = {"request-id": self._next_id("req_")}

        def message(content: list[dict[str, Any]], stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
            return {
                "id": self._next_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                    "service_tier": "standard",
                },
            }

        text = self.text
        scripted = self._scripted_tool_turn(body)
        if isinstance(scripted, str):
            text = scripted
        elif scripted is not None:
            return self._anthropic_tool_use(body, s, message, headers, scripted)

        if not body.get("stream"):
            done = message([{"type": "text", "text": text, "citations": None}], "end_turn", s.events)
            return _Reply(200, _dumps(done), headers)

        pieces = split_text(text, s.events)

        def frames() -> Iterator[_Frame]:
            def event(type_: str, **fields: Any) -> bytes:
                return _sse({"type": type_, **fields}, event=type_)

            yield event("message_start", message=message([], None, 1)), False
            yield event("content_block_start", index=0, content_block={"type": "text", "text": ""}), False
            yield event("ping"), False
            for piece in pieces:
                yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece}), True
            yield event("content_block_stop", index=0), False
            yield event(
                "message_delta",
                delta={"stop_reason": "end_turn", "stop_sequence": None},
                usage={
                    "input_tokens": input_tokens,
                    "output_tokens": s.events,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            ), False
            yield event("message_stop"), False

        return _Reply(200, headers=headers, content_type="text/event-stream; charset=utf-8", frames=frames())

    def _scripted_tool_turn(self, body: dict[str, Any]) -> str | dict[str, Any] | None:
        """For scripted tool use: the final answer (str), a tool_use block to send (dict), or None."""
        if not self._tool_scripts:
            return None
        users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            return None
        content = users[-1].get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        with self._lock:
            for block in blocks:
                if block.get("type") == "tool_result" and block.get("tool_use_id") in self._tool_calls:
                    script = self._tool_calls[block["tool_use_id"]]
                    return script.answer.replace("{result}", _tool_result_text(block))
            for script in self._tool_scripts:
                if any(b.get("type") == "text" and script.trigger in (b.get("text") or "") for b in blocks):
                    tool_id = self._next_id("toolu_")
                    self._tool_calls[tool_id] = script
                    return {"type": "tool_use", "id": tool_id, "name": script.name, "input": dict(script.input)}
        return None

    def _anthropic_tool_use(
        self,
        body: dict[str, Any],
        s: _Settings,
        message: Callable[..., dict[str, Any]],
        headers: dict[str, str],
        block: dict[str, Any],
    ) -> _Reply:
        if not body.get("stream"):
            return _Reply(200, _dumps(message([block], "tool_use", s.events)), headers)

        def frames() -> Iterator[_Frame]:
            def event(type_: str, **fields: Any) -> bytes:
                return _sse({"type": type_, **fields}, event=type_)

            yield event("message_start", message=message([], None, 1)), False
            yield event("content_block_start", index=0, content_block={**block, "input": {}}), False
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield event("content_block_delta", index=0, delta=delta), True
            yield event("content_block_stop", index=0), False
            yield event(
                "message_delta",
                delta={"stop_reason": "tool_use", "stop_sequence": None},
                usage={"output_tokens": s.events},
            ), False
            yield event("message_stop"), False

        return _Reply(200, headers=headers, content_type="text/event-stream; charset=utf-8", frames=frames())

    # --- Gemini

    def _gemini(self, req: Recorded, s: _Settings, model: str, action: str) -> _Reply:
        input_tokens = _input_tokens(req)
        if action == "countTokens":
            return _Reply(200, _dumps({"totalTokens": input_tokens}))
        response_id = self._next_id("")
        usage = {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": s.events,
            "totalTokenCount": input_tokens + s.events,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input_tokens}],
        }

        def chunk(text: str, last: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
            obj: dict[str, Any] = {"candidates": [candidate]}
            if last:
                candidate["finishReason"] = "STOP"
                obj["usageMetadata"] = usage
            obj["modelVersion"] = model
            obj["responseId"] = response_id
            return obj

        if action == "generateContent":
            return _Reply(200, _dumps(chunk(self.text, True)), content_type="application/json; charset=UTF-8")

        pieces = split_text(self.text, s.events)
        last = len(pieces) - 1
        if req.query.get("alt") == "sse":

            def sse_frames() -> Iterator[_Frame]:
                for i, piece in enumerate(pieces):
                    yield b"data: " + _dumps(chunk(piece, i == last)) + b"\r\n\r\n", True

            return _Reply(200, content_type="text/event-stream", frames=sse_frames())

        # Without alt=sse Google streams one JSON array, element by element.
        def array_frames() -> Iterator[_Frame]:
            for i, piece in enumerate(pieces):
                yield (b"[" if i == 0 else b"\n,") + _dumps(chunk(piece, i == last)), True
            yield b"\n]", False

        return _Reply(200, content_type="application/json; charset=UTF-8", frames=array_frames())


    # --- Gemini Code Assist (Gemini CLI's v1internal API)

    def _code_assist(self, req: Recorded, s: _Settings, action: str) -> _Reply:
        envelope = req.json()
        inner = envelope.get("request")
        if not isinstance(inner, dict):
            return _bad_request("Code Assist body needs a request object")
        if action == "countTokens":
            model = str(inner.get("model", "")).removeprefix("models/")
        else:
            model = envelope.get("model")
        if not isinstance(model, str) or not model:
            return _bad_request("Code Assist body needs a model")
        reply = self._gemini(req, s, model, action)
        trace = self._next_id("trace-")
        if action == "countTokens":
            return reply
        if reply.frames is None:
            wrapped = {"response": json.loads(reply.body), "traceId": trace}
            return _Reply(reply.status, _dumps(wrapped), reply.headers, reply.content_type)
        frames = reply.frames

        def wrapped_frames() -> Iterator[_Frame]:
            for data, delayed in frames:
                payload = data.strip()
                if payload.startswith(b"data: "):
                    inner_event = json.loads(payload[len(b"data: "):])
                    data = b"data: " + _dumps({"response": inner_event, "traceId": trace}) + b"\r\n\r\n"
                yield data, delayed

        return _Reply(reply.status, headers=reply.headers, content_type=reply.content_type, frames=wrapped_frames())


# ---------------------------------------------------------------------- helpers


def _is_listing(method: str, path: str) -> bool:
    return (method == "GET" and path.endswith("/models")) or (
        method == "POST" and path.endswith("/v1internal:fetchAvailableModels")
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP reset, as a crashed upstream or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _canned_reply(canned: _Canned, req: Recorded, path: str, vendor: str) -> _Reply:
    parsed = req.json() if req.body else {}
    body = parsed.get("request") if isinstance(parsed.get("request"), dict) else parsed
    streams = ":streamGenerateContent" in path or bool(body.get("stream"))
    if not streams or canned.events is None:
        return _Reply(200, _dumps(canned.body))
    framed = vendor in ("anthropic", "openai-responses")

    def frames() -> Iterator[_Frame]:
        for event in canned.events or ():
            if isinstance(event, bytes):
                yield event, True
            else:
                yield _sse(event, event.get("type") if framed else None), True
        if vendor == "openai-chat":
            yield b"data: [DONE]\n\n", False

    return _Reply(200, content_type="text/event-stream", frames=frames())


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers carry nothing the fake needs
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _input_tokens(req: Recorded) -> int:
    return max(1, len(req.body) // 4)


def _openai_chat_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_error(message: str, type_: str, code: str | None = None) -> bytes:
    return _dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def _bad_request(message: str, status: int = 400) -> _Reply:
    return _Reply(status, _openai_error(message, "invalid_request_error"))


def _openai_status_error(message: str, status: int) -> bytes:
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    type_, code = _OPENAI_ERROR_TYPES.get(status, fallback)
    return _openai_error(message, type_, code)


def _failure_reply(failure: _Failure, vendor: str) -> _Reply:
    status = failure.status
    message = f"Scripted failure: {status} {_reason(status)}"
    headers = dict(failure.headers)
    if failure.body is not None:
        return _Reply(status, failure.body, headers)
    if vendor == "anthropic":
        type_ = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake_error"}
        return _Reply(status, _dumps(body), {"request-id": "req_fake_error", **headers})
    if vendor == "gemini":
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _GEMINI_ERROR_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        }
        retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        if retry_after is not None and retry_after.isdigit():
            # Google carries the retry hint in the body, which is where Gemini clients look for it.
            error["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}
            ]
        return _Reply(status, _dumps({"error": error}), headers, "application/json; charset=UTF-8")
    return _Reply(status, _openai_status_error(message, status), {"x-request-id": "req_fake_error", **headers})


if __name__ == "__main__":
    # A fake in its own process (for benchmarks, so that it shares no GIL with the client or the
    # proxy under test): `python -m tests.fakes.upstream --latency 0.02`. Prints its base URL on
    # one line, then serves until SIGINT or SIGTERM.
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream",
        description="Serve the fake OpenAI / Anthropic / Gemini upstream on 127.0.0.1 until killed.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each reply (default 0)")
    parser.add_argument("--events", type=int, default=5, help="text deltas per stream (default 5)")
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds before each text delta (default 0)")
    parser.add_argument(
        "--record", action="store_true", help="keep every request in memory, as tests do (off: a long run would grow)"
    )

    def _key_and_status(text: str) -> tuple[str, int]:
        key, _, status = text.rpartition("=")
        if not key or not status.isdigit() or not 400 <= int(status) <= 599:
            # Not echoing the value: it holds an API key.
            raise argparse.ArgumentTypeError("expected KEY=STATUS with a 4xx or 5xx status")
        return key, int(status)

    parser.add_argument(
        "--fail",
        type=_key_and_status,
        action="append",
        default=[],
        metavar="KEY=STATUS",
        help="answer every request carrying API key KEY with STATUS and the vendor's error body, without a "
        "Retry-After hint (repeatable); the count of such answers is printed on exit",
    )
    args = parser.parse_args()

    class _Forgetful(list):
        def append(self, item: Any) -> None:
            pass

    class _ServedFake(FakeUpstream):
        failed = 0  # requests answered with a --fail status

        async def _open(self) -> None:
            # FakeUpstream._open, on the chosen port and with a backlog for hundreds of simultaneous connects.
            self._server = await asyncio.start_server(
                self._serve_connection, "127.0.0.1", args.port, limit=_HEAD_LIMIT, backlog=4096
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self.base_url = f"http://127.0.0.1:{self.port}"

        def _take_failure(self, api_key: str | None) -> _Failure | None:
            failure = super()._take_failure(api_key)
            if failure is not None:
                self.failed += 1  # only the loop's thread counts; read after stop()
            return failure

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    fake = _ServedFake(latency=args.latency, stream_events=args.events, event_delay=args.event_delay)
    for key, status in args.fail:
        fake.fail(key, status)  # times=None: for as long as the fake runs
    if not args.record:
        fake.requests = _Forgetful()
    fake.start()
    print(fake.base_url, flush=True)
    try:
        while True:
            signal.pause()
    finally:
        fake.stop()
        if args.fail:
            # For a benchmark to check that its requests met the failing keys (scripts/bench).
            print(f"answered {fake.failed} requests with a --fail status", flush=True)
