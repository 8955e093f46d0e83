"""Asks each credential's upstream for its model listing, at start and every few hours.

One background task, started in `running` and stopped in `done` (as addons/refresh.py), looks
once a second for credentials whose listing is due and lists each in a task of its own: one
listing per credential at a time, a few at once, each bounded by `model-listing.timeout-seconds`,
so that a slow or hanging upstream never holds anything up. Credentials added while the proxy
runs (the auth directory, a config edit) are listed within a second; a resting or disabled one
is not asked until its rest is over. Requests go where the credential's model calls go (its
base URL, `upstream-overrides`, its upstream proxy).

What was listed goes to the runtime (routing/runtime.py `set_listing`), which the router serves
from. While a credential's listing fails its built-in list (or what it listed before) stands in,
and the log says so once per change, naming the credential by its label.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from auth.credential import Credential
from auth.refresh import EXPIRY_MARGIN
from auth.providers.listing import Lister, ListingError
from routing.listings import MAX_PAGES, lister, listing_request, usable_ids
from routing.runtime import Runtime
from routing.upstream import upstream_proxy

logger = logging.getLogger("cliproxy")

TICK = 1.0
MAX_CONCURRENT = 4
# A failed listing is tried again this soon (or at the interval, if that is shorter).
RETRY_AFTER_FAILURE = 300.0
# No model listing is this big; an answer that is, is not read to its end.
MAX_BODY = 16 << 20

_STOPPING: set[asyncio.Future] = set()


def _why(e: BaseException, timeout: float) -> str:
    """A few words on why a listing failed (never a URL, header or secret)."""
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return f"no complete answer within {timeout:g}s"
    if isinstance(e, ListingError):
        return str(e)
    if isinstance(e, httpx.ConnectError):
        return "cannot connect"
    if isinstance(e, httpx.TransportError):
        return f"connection failed ({type(e).__name__})"
    if isinstance(e, ValueError):  # an upstream proxy this proxy cannot speak
        return "its upstream proxy is not supported"
    return type(e).__name__


class ModelListings:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None
        self._running: dict[str, asyncio.Task] = {}  # credential id -> its listing under way
        self._due: dict[str, float] = {}  # credential id -> monotonic time of its next listing
        self._failing: dict[str, bool] = {}  # credential id -> whether its last listing failed
        self._semaphore: asyncio.Semaphore | None = None
        self.listed = 0  # listings that succeeded (tests, debug)

    # -- lifecycle ---------------------------------------------------------------------------

    def running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="cliproxy-model-listings")

    def done(self):
        task, self._task = self._task, None
        tasks = [t for t in (task, *self._running.values()) if t is not None]
        self._running.clear()
        if not tasks:
            return None
        for t in tasks:
            t.cancel()
        waiter = asyncio.ensure_future(asyncio.wait(tasks))
        _STOPPING.add(waiter)
        waiter.add_done_callback(_STOPPING.discard)
        return waiter

    async def _loop(self) -> None:
        while True:
            try:
                self.check()
            except Exception:
                logger.exception("cliproxy: model listing check failed")
            await asyncio.sleep(min(TICK, self.runtime.config.model_listing.interval_seconds))

    # -- deciding what to list ----------------------------------------------------------------

    def check(self) -> int:
        """Start the listings that are due; returns how many were started."""
        settings = self.runtime.config.model_listing
        credentials = self.runtime.router.credentials
        present = {c.id for c in credentials}
        for state in (self._due, self._failing):
            for cid in [k for k in state if k not in present]:
                del state[cid]
        if not settings.enabled:
            for cid in list(self.runtime.listings):
                self.runtime.set_listing(cid, None)
            self._due.clear()
            return 0
        now = time.monotonic()
        started = 0
        for cred in credentials:
            spec = lister(cred)
            if spec is None or cred.id in self._running or self._due.get(cred.id, 0.0) > now:
                continue
            current = self._ready(cred)
            if current is None:
                continue
            self._running[cred.id] = asyncio.get_running_loop().create_task(self._list(current, spec))
            started += 1
        return started

    def _ready(self, cred: Credential) -> Credential | None:
        """The version of `cred` to list with, or None while asking would spend a request that
        cannot succeed or that the credential should not make (it rests, or is switched off)."""
        pool = self.runtime.pool
        if pool.is_disabled(cred.id) or any(model is None for model, _, _ in pool.rests(cred.id)):
            return None
        if not cred.oauth:
            return cred
        # A login is listed with the token it has; refreshing is the refresher's business.
        current = self.runtime.refresher.current(cred)
        if current is None or not current.secret or current.refresh_error:
            return None
        if current.expires_at is not None and current.expires_at - time.time() <= EXPIRY_MARGIN:
            return None
        return current

    # -- listing one credential ----------------------------------------------------------------

    async def _list(self, cred: Credential, spec: Lister) -> None:
        settings = self.runtime.config.model_listing
        try:
            if self._semaphore is None:
                self._semaphore = asyncio.Semaphore(MAX_CONCURRENT)
            async with self._semaphore:
                try:
                    async with asyncio.timeout(settings.timeout_seconds):
                        models = await self._fetch(cred, spec)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - every failure means the same: fall back
                    self._failed(cred, _why(e, settings.timeout_seconds), settings.interval_seconds)
                else:
                    self._succeeded(cred, models, settings.interval_seconds)
        finally:
            if self._running.get(cred.id) is asyncio.current_task():
                del self._running[cred.id]

    async def _fetch(self, cred: Credential, spec: Lister) -> tuple[str, ...]:
        config = self.runtime.config
        proxy = upstream_proxy(cred, config.proxy_url)
        ids: list[str] = []
        page: dict[str, str] | None = None
        async with httpx.AsyncClient(proxy=proxy, trust_env=False, follow_redirects=False, timeout=None) as client:
            for _ in range(MAX_PAGES):
                request = listing_request(cred, spec, config.upstream_overrides, page)
                async with client.stream(
                    request.method, request.url, headers=request.headers, content=request.body or None
                ) as response:
                    if response.status_code != 200:
                        raise ListingError(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise ListingError(f"the answer is over {MAX_BODY >> 20} MiB")
                result = spec.decode(bytes(body))
                ids.extend(result.ids)
                page = result.next
                if page is None:
                    break
            else:
                raise ListingError(f"more than {MAX_PAGES} pages")
        models = usable_ids(ids)
        if not models:
            raise ListingError("it listed no models")
        return models

    def _present(self, cred: Credential) -> bool:
        return any(c.id == cred.id for c in self.runtime.router.credentials)

    def _succeeded(self, cred: Credential, models: tuple[str, ...], interval: float) -> None:
        if not self._present(cred):
            return  # removed while it was being listed: its models go with it
        self.listed += 1
        self._due[cred.id] = time.monotonic() + interval
        was_failing = self._failing.get(cred.id)
        self._failing[cred.id] = False
        self.runtime.set_listing(cred.id, models)
        if was_failing:
            logger.info(f"cliproxy: model listing of {cred.label} works again: {len(models)} models")
        else:
            logger.debug(f"cliproxy: {cred.label} lists {len(models)} models")

    def _failed(self, cred: Credential, why: str, interval: float) -> None:
        if not self._present(cred):
            return
        self._due[cred.id] = time.monotonic() + min(interval, RETRY_AFTER_FAILURE)
        if self._failing.get(cred.id):
            return  # said already
        self._failing[cred.id] = True
        instead = (
            "the models it listed before stay"
            if cred.id in self.runtime.listings
            else "its built-in model list stands in"
        )
        logger.warning(f"cliproxy: model listing of {cred.label} failed ({why}); {instead} until it answers")

