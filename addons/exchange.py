"""One client request's journey across credentials, as the dispatcher, its attempts and its
report share it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mitmproxy import http

from addons.relay import Answer
from routing.legs import Leg
from routing.router import Route
from routing.upstream import ClientRequest
from translators.formats import Format
from translators.usage import UsageScan

# The client key label of intercepted traffic (a vendor CLI's own key, not one of the proxy's).
INTERCEPTED = "intercepted"


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
    # A whole answer as the upstream sent it (format, body, content-encoding): its usage is
    # read by the report, once the client has the answer.
    whole: tuple[Format, bytes, str | None] | None = None
    scan: UsageScan | None = None  # follows a stream that is not translated, for its usage
    watch: object | None = None  # the stream callable (a translator knows the stream's usage)


# Coroutines started from synchronous hooks, kept referenced until they finish.
_BACKGROUND: set[asyncio.Future] = set()


def background(coro) -> asyncio.Future:
    future = asyncio.ensure_future(coro)
    _BACKGROUND.add(future)
    future.add_done_callback(_BACKGROUND.discard)
    return future
