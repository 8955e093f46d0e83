"""Keeping OAuth access tokens fresh: per-provider refresh calls, and the refresher that runs them.

`refresh_token()` is one call to a provider's token endpoint (httpx, no mitmproxy). `Refresher`
decides when: in the background a provider-specific lead time before expiry, and on demand when
a request finds its token expired or the upstream answers 401. One refresh per credential at a
time (single flight: concurrent callers wait for the same one), at most `MAX_CONCURRENT` at once.

A refreshed token file is written atomically (auth.tokens.save_token_file) *before* the new
access token is used, so a rotated refresh token is never lost to a crash. A refusal that retrying
cannot fix (`invalid_grant`, a reused or revoked refresh token) is recorded on the credential and
in its file, and never retried until the file changes (a new login).

With a state store shared by several instances (`shared`, auth.shared.tokens), a refresh of a
rotating login first takes that credential's lock in the store, or adopts the token another
instance refreshed; without one, or while it is unreachable, all of this runs on local state.

No token ever appears in a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from auth import project, providers
from auth.credential import Credential
from auth.providers.grant import Refreshed, RefreshError
from auth.shared.tokens import UNAVAILABLE, Record, SharedTokens, Turn, adopted, same
from auth.store import AuthStore, Entry, with_refresh_error
from auth.tokens import TokenFile, TokenFileError, load_token_file, save_token_file

logger = logging.getLogger("cliproxy")

CHECK_INTERVAL = 5.0
MAX_CONCURRENT = 16
PENDING_BACKOFF = 60.0  # a refresh running this long is not started again by the loop
FAILURE_BACKOFF = 5 * 60.0
INEFFECTIVE_BACKOFF = 30.0  # refreshed, yet still within the lead time (a short-lived token)
# A token this close to its expiry is treated as expired by requests (it could die in flight).
EXPIRY_MARGIN = 30.0
TASK_NAME = "cliproxy-refresh"


def running_tasks() -> int:
    """How many refresh loops run in this process (one, unless a reload leaked one)."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        return 0
    return sum(1 for t in tasks if t.get_name() == TASK_NAME and not t.done())


__all__ = ["RefreshError", "Refreshed", "Refresher", "refresh_token", "running_tasks"]


async def refresh_token(
    cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
) -> Refreshed:
    """One refresh of `cred` (whose file content is `token`). Raises RefreshError."""
    return await providers.of(cred).refresh(cred, token, client, overrides)


# -- the refresher ---------------------------------------------------------------------------------


class Refresher:
    """Background and on-demand refreshes over an AuthStore. Lives on one event loop."""

    def __init__(
        self,
        store: AuthStore,
        *,
        overrides: Callable[[], Mapping[str, str]] = dict,
        publish: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        max_concurrent: int = MAX_CONCURRENT,
    ) -> None:
        self.store = store
        self._overrides = overrides
        self._publish = publish
        self._clock = clock
        self._max_concurrent = max_concurrent
        self._semaphore: asyncio.Semaphore | None = None
        self._client: httpx.AsyncClient | None = None
        self._inflight: dict[str, asyncio.Task[Credential | None]] = {}
        self._not_before: dict[str, float] = {}  # credential id -> clock time of the next attempt
        self._failed: set[str] = set()  # ids whose last refresh failed (transiently)
        self._failures: dict[str, str] = {}  # why, for the management API (never a token)
        # Code Assist project discovery (auth.project): running, and failed until then.
        self._discovering: dict[str, asyncio.Task[tuple[Credential | None, str]]] = {}
        self._project_not_before: dict[str, tuple[float, str]] = {}
        self.project_transport: httpx.BaseTransport | None = None  # tests: a scripted upstream
        # The tokens shared with other instances (addons/shared_tokens.py sets it); None: local.
        self.shared: SharedTokens | None = None
        self.attempts = 0  # refresh calls made (for tests and debug logs)

    # -- state -------------------------------------------------------------------------------

    def current(self, cred: Credential) -> Credential | None:
        """The newest version of an OAuth credential (None once its file is gone)."""
        if not cred.oauth:
            return cred
        entry = self.store.entry(cred.id)
        return entry.credential if entry is not None else None

    def forget(self, ids: list[str]) -> None:
        """Credentials whose file changed or vanished: their backoff no longer applies."""
        for i in ids:
            self._not_before.pop(i, None)
            self._failed.discard(i)
            self._failures.pop(i, None)
            self._project_not_before.pop(i, None)

    def refreshing(self, cred: Credential) -> bool:
        return cred.id in self._inflight

    def failure(self, cred_id: str) -> tuple[str, float | None] | None:
        """Why the last refresh of a credential failed, when it failed in a way that a later
        attempt may fix, and when that attempt is due (clock time); None otherwise. Refusals
        for good are on the credential (`refresh_error`)."""
        if cred_id not in self._failed:
            return None
        return self._failures.get(cred_id, "refresh failed"), self._not_before.get(cred_id)

    def due(self, entry: Entry, now: float) -> bool:
        cred = entry.credential
        if entry.disabled or cred.refresh_error:
            return False
        lead = providers.lead_time(cred)
        if cred.kind == "service-account":
            return not cred.secret or cred.expires_at is None or cred.expires_at - now <= lead
        if not entry.token.refresh_token:
            return False
        if not cred.secret:
            return True  # iFlow without its API key yet
        if cred.expires_at is not None:
            return cred.expires_at - now <= lead
        last = entry.token.get("last_refresh")
        if isinstance(last, str):
            try:
                when = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
            except ValueError:
                return False
            return now - when.timestamp() >= lead
        return False

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, interval: Callable[[], float] = lambda: CHECK_INTERVAL) -> None:
        """Check every `interval()` seconds until cancelled; then stop every refresh."""
        try:
            while True:
                try:
                    self.check()
                except Exception:
                    logger.exception("cliproxy: refresh check failed")
                await asyncio.sleep(max(0.05, interval()))
        finally:
            await self.aclose()

    def check(self) -> int:
        """Start a refresh for every credential that is due; returns how many were started."""
        now = self._clock()
        started = 0
        for entry in self.store.entries():
            cid = entry.credential.id
            if cid in self._inflight or self._not_before.get(cid, 0.0) > now:
                continue
            if self.due(entry, now):
                self._start(cid, "due")
                started += 1
        return started

    async def aclose(self) -> None:
        tasks = [*self._inflight.values(), *self._discovering.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- on demand ---------------------------------------------------------------------------

    async def refresh(self, cred_id: str, reason: str = "on demand") -> Credential | None:
        """Refresh now, or join the refresh already running; the new credential, or None."""
        task = self._inflight.get(cred_id) or self._start(cred_id, reason)
        return await asyncio.shield(task)

    async def usable(self, cred: Credential) -> tuple[Credential | None, str]:
        """The version of `cred` to send a request with, refreshed first when its token has
        expired (and with its Code Assist project found first when its file names none); or
        None and the reason it cannot serve now."""
        current, why = await self._fresh(cred)
        if current is None or not project.needs_project(current):
            return current, why
        return await self._with_project(current)

    async def _fresh(self, cred: Credential) -> tuple[Credential | None, str]:
        if not cred.oauth:
            return cred, ""
        current = self.current(cred)
        if current is None:
            return None, "its auth file is gone"
        if not self._expired(current):
            return current, ""
        if current.refresh_error:
            return None, f"its token expired and the refresh token was refused ({current.refresh_error}); log in again"
        if current.id not in self._inflight and current.id in self._failed:
            wait = self._not_before.get(current.id, 0.0) - self._clock()
            if wait > 0:
                return None, f"its token expired and the last refresh failed; next attempt in {wait:.0f}s"
        await self.refresh(current.id, "token expired")
        current = self.current(cred)
        if current is None:
            return None, "its auth file is gone"
        if self._expired(current):
            if current.refresh_error:
                return None, f"its token expired and the refresh token was refused ({current.refresh_error}); log in again"
            return None, "its token expired and the refresh failed"
        return current, ""

    async def after_unauthorized(self, cred: Credential) -> Credential | None:
        """An upstream 401 on `cred`: the credential to retry with once (refreshed), or None
        when there is nothing a refresh can fix."""
        current = self.current(cred)
        if current is None or current.refresh_error:
            return None
        if current.secret != cred.secret:
            return current  # refreshed since the request left
        if cred.kind == "oauth" and not self.store.entry(cred.id).token.refresh_token:  # type: ignore[union-attr]
            return None
        refreshed = await self.refresh(cred.id, "upstream answered 401")
        if refreshed is None or refreshed.secret == cred.secret:
            return None
        return refreshed

    # -- Code Assist project discovery ----------------------------------------------------------

    async def _with_project(self, cred: Credential) -> tuple[Credential | None, str]:
        """`cred` with the project `loadCodeAssist` / `onboardUser` name, written into its file
        (once per credential; concurrent requests wait for the same discovery)."""
        failed = self._project_not_before.get(cred.id)
        if failed is not None and cred.id not in self._discovering and failed[0] > self._clock():
            return None, failed[1]
        task = self._discovering.get(cred.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._discover(cred))
            self._discovering[cred.id] = task

            def finished(t: asyncio.Task, cid: str = cred.id) -> None:
                if self._discovering.get(cid) is t:
                    del self._discovering[cid]

            task.add_done_callback(finished)
        return await asyncio.shield(task)

    async def _discover(self, cred: Credential) -> tuple[Credential | None, str]:
        try:
            found = await asyncio.to_thread(project.discover_project, cred, self._overrides(), self.project_transport)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - LoginError, or a bug: never a token in the log
            message = str(e) if isinstance(e, project.LoginError) else type(e).__name__
            why = f"its file names no Code Assist project and none could be found ({message})"
            self._project_not_before[cred.id] = (self._clock() + FAILURE_BACKOFF, why)
            logger.warning(f"cliproxy: {cred.label}: {why}; next attempt in {FAILURE_BACKOFF / 60:.0f} min")
            return None, why
        self._project_not_before.pop(cred.id, None)
        entry = self.store.entry(cred.id)
        if entry is None:
            return None, "its auth file is gone"
        if entry.credential.project_id:  # the file gained one meanwhile: it wins
            return entry.credential, ""
        new = entry.token.updated(project_id=found)
        current = await self._save(cred.id, cred.label, new, f"its Code Assist project {found}")
        if current is None:
            return None, "its auth file is gone"
        self._publish()
        logger.info(f"cliproxy: {cred.label}: Code Assist project {found} found and saved to the file")
        return current, ""

    def _expired(self, cred: Credential) -> bool:
        if not cred.secret:
            return True
        return cred.expires_at is not None and cred.expires_at - self._clock() <= EXPIRY_MARGIN

    # -- one refresh -------------------------------------------------------------------------

    def _start(self, cred_id: str, reason: str) -> asyncio.Task[Credential | None]:
        task = asyncio.get_running_loop().create_task(self._refresh(cred_id, reason))
        self._inflight[cred_id] = task
        self._not_before[cred_id] = self._clock() + PENDING_BACKOFF

        def finished(t: asyncio.Task, cid: str = cred_id) -> None:
            if self._inflight.get(cid) is t:
                del self._inflight[cid]

        task.add_done_callback(finished)
        return task

    async def _refresh(self, cred_id: str, reason: str) -> Credential | None:
        try:
            entry, shared = self.store.entry(cred_id), self.shared
            if shared is None or not shared.covers(entry):
                return await self._refresh_once(cred_id, reason, Turn())
            turn = await shared.take_turn(cred_id, entry.token)  # type: ignore[union-attr]
            if turn.newer is not None:
                return await self.adopt(cred_id, turn.newer)
            if turn.gave_up:
                logger.warning(f"cliproxy: {cred_id}: another instance holds its refresh and has not finished")
                return None
            try:
                return await self._refresh_once(cred_id, reason, turn)
            finally:
                await shared.finish(cred_id, turn)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must not leak a token through a traceback
            logger.error(f"cliproxy: refresh of {cred_id} failed unexpectedly ({type(e).__name__})")
            self._backoff(cred_id, f"failed unexpectedly ({type(e).__name__})")
            return None

    @staticmethod
    def _newer_on_disk(entry: Entry, token: TokenFile) -> bool:
        try:
            on_disk = load_token_file(entry.path)
        except TokenFileError:
            return False
        return bool(on_disk.refresh_token) and on_disk.refresh_token != token.refresh_token

    def _backoff(self, cred_id: str, why: str) -> None:
        self._failed.add(cred_id)
        self._failures[cred_id] = why
        self._not_before[cred_id] = self._clock() + FAILURE_BACKOFF

    async def _refresh_once(self, cred_id: str, reason: str, turn: Turn) -> Credential | None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrent)
        async with self._semaphore:
            entry = self.store.entry(cred_id)
            if entry is None:
                return None
            cred, token = entry.credential, entry.token
            if self._client is None:
                self._client = httpx.AsyncClient(follow_redirects=False)
            self.attempts += 1
            logger.debug(f"cliproxy: refreshing {cred.label} ({reason})")
            try:
                result = await refresh_token(cred, token, self._client, self._overrides())
            except RefreshError as e:
                if e.terminal and self.shared is not None and self.shared.covers(entry):
                    newer = await self.shared.newer_than(cred_id, token)
                    if newer is UNAVAILABLE:
                        # Perhaps refused as stale: another instance may have rotated it, and
                        # the store that would say so is unreachable. Not marked for good.
                        e = RefreshError(f"{e}; the shared state store is unreachable, so it may hold a newer token")
                    elif newer is not None:
                        return await self.adopt(cred_id, newer)  # refused as stale: taken over
                return await self._refused(cred_id, token, e)

            entry = self.store.entry(cred_id)
            if entry is None:
                logger.info(f"cliproxy: {cred.label} was removed during its refresh; result dropped")
                return None
            new = result.token
            if entry.token.data is not token.data:
                # Edited on disk meanwhile. The same refresh token: the edit is kept and the new
                # tokens go on top. Another one (a new login): the file wins.
                if entry.token.refresh_token != token.refresh_token:
                    logger.info(f"cliproxy: {cred.label} changed on disk during its refresh; keeping the file")
                    return entry.credential
                changed = {k: v for k, v in new.data.items() if token.data.get(k) != v}
                new = TokenFile(entry.path, {**entry.token.data, **changed})

            if result.persist:
                if self.shared is not None:
                    await self.shared.share(cred_id, turn, new)  # before anything uses it
                refreshed = await self._save(cred_id, cred.label, new, "the refreshed token")
            else:
                base = entry.credential
                refreshed = self.store.replace(
                    cred_id, entry.token,
                    dataclasses.replace(base, secret=result.secret, expires_at=result.expires_at),
                )
            if refreshed is None:
                return None
            now = self._succeeded(cred_id)
            left = "" if refreshed.expires_at is None else f"; valid for {max(0, refreshed.expires_at - now) / 60:.0f} min"
            logger.info(f"cliproxy: refreshed the token of {cred.label}{left}")
            return refreshed

    async def _save(self, cred_id: str, label: str, new: TokenFile, what: str) -> Credential | None:
        """Write `new` to its file (atomically) and put it in force. A failed write (of `what`,
        as the log line names it) keeps it in memory: the old refresh token may be dead already."""
        self.store.begin_write(cred_id, new.data)
        try:
            await asyncio.to_thread(save_token_file, new)
        except OSError as e:
            logger.error(
                f"cliproxy: {label}: {what} could not be written "
                f"({e.strerror or type(e).__name__}); it is kept in memory only"
            )
        return self.store.replace(cred_id, new)

    def _succeeded(self, cred_id: str) -> float:
        self._failed.discard(cred_id)
        self._failures.pop(cred_id, None)
        now = self._clock()
        if self.due(self.store.entry(cred_id), now):  # type: ignore[arg-type]
            self._not_before[cred_id] = now + INEFFECTIVE_BACKOFF
        else:
            self._not_before.pop(cred_id, None)
        self._publish()
        return now

    async def adopt(self, cred_id: str, record: Record) -> Credential | None:
        """The token another instance put into the shared store, in force here and written to
        this instance's file (so that it still has it without the store)."""
        entry = self.store.entry(cred_id)
        if entry is None:
            return None
        if same(entry.token, record):
            return entry.credential
        new = TokenFile(entry.path, adopted(entry.token.data, record.material))
        current = await self._save(cred_id, entry.credential.label, new, "the shared token")
        if current is None:
            return None
        self._succeeded(cred_id)
        logger.info(f"cliproxy: {entry.credential.label}: took the newer token another instance put into the shared store")
        return current

    async def _refused(self, cred_id: str, token: TokenFile, error: RefreshError) -> Credential | None:
        entry = self.store.entry(cred_id)
        label = entry.credential.label if entry else cred_id
        if not error.terminal:
            self._backoff(cred_id, str(error))
            logger.warning(f"cliproxy: token refresh of {label} failed: {error}; retrying in {FAILURE_BACKOFF / 60:.0f} min")
            return None
        logger.error(
            f"cliproxy: token refresh of {label} refused for good: {error}. "
            "Its refresh token will not be tried again: log in again to replace the file."
        )
        self._not_before.pop(cred_id, None)
        self._failed.discard(cred_id)
        self._failures.pop(cred_id, None)
        if entry is None:
            return None
        if entry.token.data is not token.data and entry.token.refresh_token != token.refresh_token:
            return entry.credential  # a new login arrived meanwhile
        if entry.credential.kind != "service-account" and self._newer_on_disk(entry, token):
            # Another writer (a new login, CLIProxyAPI sharing the directory) already replaced
            # the refresh token we used: take the file's, do not mark it.
            logger.info(f"cliproxy: {label} was replaced on disk meanwhile; using the file's new token")
            self.store.scan()
            self._publish()
            current = self.store.entry(cred_id)
            return current.credential if current else None
        marked = with_refresh_error(entry.token, error.code)
        if entry.credential.kind == "service-account":
            # Nothing to persist for an in-memory token: mark the credential only.
            refreshed = self.store.replace(cred_id, marked)
        else:
            self.store.begin_write(cred_id, marked.data)
            try:
                await asyncio.to_thread(save_token_file, marked)
            except OSError as e:
                logger.error(f"cliproxy: {label}: could not record the refusal in the file ({e.strerror})")
            refreshed = self.store.replace(cred_id, marked)
        self._publish()
        return refreshed
