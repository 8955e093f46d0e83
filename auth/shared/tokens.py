"""OAuth tokens shared by the instances of one state store: one refresh per rotating token.

Refreshing a credential takes a lock in the store (redis-py's own `Lock`: set-if-absent with an
expiry and an owner token, released only by its owner). The holder re-reads the shared token
first (another instance may have refreshed meanwhile), refreshes, and writes the new token to
the store before it uses it or releases the lock, then to its own auth dir, then publishes the
credential's id. The others wait for the publication (bounded by the lock's expiry, re-reading
the store meanwhile) and adopt the new token instead of refreshing. A holder killed mid-refresh
leaves a lock that expires; the next instance then refreshes with the newest refresh token the
store holds. A store that is down (or answers late) is no reason to wait: the refresh runs on
local state, as without a store, and what changed is pushed once the store is back.

What is stored, per credential: one key `<prefix>token:<credential id>` whose value is a Fernet
token (AES-128-CBC with HMAC-SHA256) of JSON: the token file's data less its per-instance
settings (`LOCAL_KEYS`), a version, when and by which instance it was written, and keyed digests
of the refresh tokens it replaced. The Fernet key is derived with HKDF-SHA256 (salt
`cliproxy-state-store`, info `tokens v1`) from `state-store-key`, or from the environment's
CLIPROXY_STATE_KEY, which wins: any long string works, and instances given the same string read
each other's tokens. No token, nor the key, is ever written to the store, a log line or an
exception message in plaintext; the publication carries the credential id only.

Seeding: at every (re)connection, and whenever the auth-dir watcher reports a file added or
edited, each OAuth token file is compared with its credential's shared record:
  * no record: the file is pushed;
  * the same access and refresh token: nothing to do;
  * the file's refresh token is one the record replaced: the file is stale, the record adopted;
  * the file was edited while the proxy runs (a new login), or last modified after the record
    was written (a login while the proxy was stopped, a refresh while the store was
    unreachable): the file is newer and is pushed;
  * otherwise the record is newer and is adopted.
Adopting writes the token file (atomically, mode 600), so the instance keeps the newest token if
it later runs without the store. File times are compared with the record's write time, both
wall clocks: keep the instances' clocks in sync (NTP).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError

from auth.shared.store import SharedStore, subscribe
from auth.store import AuthStore, Entry
from auth.tokens import REFRESH_ERROR_KEY, TokenFile

logger = logging.getLogger("cliproxy")

KEY_ENV = "CLIPROXY_STATE_KEY"
KDF_SALT = b"cliproxy-state-store"
KDF_INFO = b"tokens v1"
# Comfortably past the token endpoint's own timeout (auth.providers.grant.TIMEOUT, 30 s): a live
# holder never loses the lock mid-refresh. A dead one delays the others' refresh by this much.
DEFAULT_LOCK_TTL = 45.0
# How often a waiting instance re-reads the record besides waking on a publication (a
# publication is lost when the store's connection drops at that moment).
WAIT_POLL = 0.25
REPLACED_KEPT = 32
# A refresh at start-up waits this long for the first connection and its resync: an instance
# starting with a copy its peers have since rotated must not refresh that dead copy.
FIRST_SYNC_WAIT = 4.0
# A refresh that finds the store gone waits this long for it to come back before refreshing on
# local state: a blip (a busy machine, a restart) must not send a stale refresh token. Once it
# has been gone longer than OUTAGE, refreshes run locally at once.
BLIP_WAIT = 2.0
OUTAGE = 10.0
# A token file's settings that belong to the instance, not to the login: an adoption keeps the
# local file's, and the store never holds them.
LOCAL_KEYS = frozenset({
    "disabled", "prefix", "priority", "attributes", "headers", "proxy_url", "base_url",
    "excluded_models", "note", "websockets", REFRESH_ERROR_KEY,
})


class _Unavailable:
    def __repr__(self) -> str:
        return "UNAVAILABLE"


# The store is down, answered late, or holds a record this instance's key cannot open.
UNAVAILABLE: Any = _Unavailable()


class TokenCipher:
    """Token material sealed with a key derived from any string (HKDF-SHA256)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty key")
        derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=KDF_SALT, info=KDF_INFO).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived[:32]))
        self._mac_key = derived[32:]

    def seal(self, value: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def open(self, blob: bytes) -> dict[str, Any]:
        """The sealed value; InvalidToken when another key sealed it, or it was tampered with."""
        value = json.loads(self._fernet.decrypt(blob))
        if not isinstance(value, dict):
            raise InvalidToken
        return value

    def digest(self, refresh_token: str) -> str:
        """Names a refresh token without revealing it (keyed: no guessing from a leaked record)."""
        return hmac.new(self._mac_key, refresh_token.encode(), hashlib.sha256).hexdigest()[:32]


def material(data: dict[str, Any]) -> dict[str, Any]:
    """What of a token file's data is the login's, and so shared."""
    return {k: v for k, v in data.items() if k not in LOCAL_KEYS}


def adopted(local: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """The local file's settings with the shared login's material (a local refusal mark goes:
    the shared token is newer than the one refused)."""
    kept = {k: v for k, v in local.items() if k in LOCAL_KEYS and k != REFRESH_ERROR_KEY}
    return {**kept, **shared}


@dataclass(slots=True)
class Record:
    """One credential's entry in the store, opened."""

    material: dict[str, Any] = field(repr=False)
    version: int
    updated_at: float
    writer: str
    replaced: tuple[str, ...] = ()

    @property
    def token(self) -> TokenFile:
        return TokenFile(Path(), self.material)

    def sealed(self) -> dict[str, Any]:
        return {"material": self.material, "version": self.version, "updated_at": self.updated_at,
                "writer": self.writer, "replaced": list(self.replaced)}

    @classmethod
    def opened(cls, value: dict[str, Any]) -> Record:
        return cls(dict(value["material"]), int(value["version"]), float(value["updated_at"]),
                   str(value["writer"]), tuple(value.get("replaced") or ()))


def same(token: TokenFile, record: Record) -> bool:
    theirs = record.token
    return (token.access_token, token.refresh_token) == (theirs.access_token, theirs.refresh_token)


@dataclass(slots=True)
class Turn:
    """What one refresh of a credential may do, once `SharedTokens.take_turn` has decided."""

    newer: Record | None = None  # another instance refreshed it: adopt this instead
    lock: Lock | None = None  # held: refresh under it. None (and nothing newer): refresh locally
    record: Record | None = None  # the shared record when the lock was taken
    written: Record | None = None
    gave_up: bool = False  # waited the lock's whole expiry for another instance, in vain


class SharedTokens:
    """The token side of one state store, for the credentials of one auth directory."""

    def __init__(
        self,
        store: SharedStore,
        secret: str,
        auth: AuthStore,
        adopt: Callable[[str, Record], Awaitable[object]],
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
    ) -> None:
        self.store = store
        self.auth = auth
        self.cipher = TokenCipher(secret)
        self.lock_ttl = lock_ttl
        self._adopt = adopt
        self.channel = store.key("tokens")
        self._published: dict[str, asyncio.Event] = {}
        self._unreadable: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._synced: asyncio.Event | None = None  # the first resync done (or given up on)
        self._down_since: float | None = None

    @staticmethod
    def covers(entry: Entry | None) -> bool:
        """Rotating logins only: a service account mints its tokens from a key of its own."""
        return entry is not None and entry.credential.kind == "oauth" and bool(entry.token.refresh_token)

    def _key(self, cred_id: str) -> str:
        return self.store.key("token", cred_id)

    def _lock(self, cred_id: str) -> Lock:
        return Lock(self.store.client, self.store.key("token-lock", cred_id), timeout=self.lock_ttl,
                    blocking=False, thread_local=False)

    # -- the record --------------------------------------------------------------------------

    async def read(self, cred_id: str) -> Record | None:
        """The shared record, None when there is none, or UNAVAILABLE."""
        key = self._key(cred_id)
        blob = await self.store.call(lambda c: c.get(key), UNAVAILABLE)
        if blob is UNAVAILABLE or blob is None:
            return blob
        try:
            record = Record.opened(self.cipher.open(blob))
        except (InvalidToken, ValueError, KeyError, TypeError):
            if cred_id not in self._unreadable:
                self._unreadable.add(cred_id)
                logger.error(
                    f"cliproxy: the shared token of {cred_id} cannot be opened with this instance's key: "
                    "give every instance the same state-store-key (or CLIPROXY_STATE_KEY); until then "
                    "this instance refreshes it on its own"
                )
            return UNAVAILABLE
        self._unreadable.discard(cred_id)
        return record

    async def _write(self, cred_id: str, token: TokenFile, previous: Record | None) -> Record | None:
        replaced = list(previous.replaced) if previous else []
        old = previous.token.refresh_token if previous else ""
        if old and old != token.refresh_token:
            replaced.append(self.cipher.digest(old))
        record = Record(
            material(token.data), (previous.version if previous else 0) + 1, time.time(),
            self.store.instance, tuple(replaced[-REPLACED_KEPT:]),
        )
        blob, key = self.cipher.seal(record.sealed()), self._key(cred_id)
        return record if await self.store.call(lambda c: c.set(key, blob), None) else None

    async def _publish(self, cred_id: str) -> None:
        await self.store.call(lambda c: c.publish(self.channel, cred_id), 0)

    # -- the lock ----------------------------------------------------------------------------

    async def _try_lock(self, lock: Lock) -> bool | None:
        """Taken, held by another, or None: the store is down."""
        # The instance's name in the owner token tells an operator (and a test) who holds it.
        owner = f"{self.store.instance}/{uuid.uuid4().hex}"
        return await self.store.call(lambda c: lock.acquire(blocking=False, token=owner), None)

    async def _unlock(self, lock: Lock, cred_id: str) -> None:
        async def release(_client: object) -> bool:
            try:
                await lock.release()
            except LockNotOwnedError:
                return False
            return True

        if not await self.store.call(release, True):
            logger.warning(
                f"cliproxy: the token refresh of {cred_id} outlasted its lock ({self.lock_ttl:g}s); "
                "raise cliproxy_token_lock_ttl if the token endpoint is that slow"
            )

    def _first_sync(self) -> asyncio.Event:
        if self._synced is None:
            self._synced = asyncio.Event()
            if self.store.up:
                self._synced.set()
        return self._synced

    async def _back_soon(self, timeout: float) -> bool:
        """Whether the store is up, or comes back within `timeout` (unless it has been gone
        for a while already)."""
        loop = asyncio.get_running_loop()
        if self.store.up:
            self._down_since = None
            return True
        if self._down_since is None:
            self._down_since = loop.time()
        deadline = min(loop.time() + timeout, self._down_since + OUTAGE)
        while not self.store.up:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        self._down_since = None
        return True

    async def take_turn(self, cred_id: str, held: TokenFile) -> Turn:
        """Before refreshing `held`: take the credential's lock (re-reading the record under
        it), or wait for the holder's publication and return what it wrote. Turn() (refresh
        locally) when the store stays unreachable."""
        first = self._first_sync()
        if not first.is_set():
            try:
                async with asyncio.timeout(FIRST_SYNC_WAIT):
                    await first.wait()
            except asyncio.TimeoutError:
                first.set()  # started without the store: do not wait again
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_ttl + 1.0
        published = self._published.setdefault(cred_id, asyncio.Event())
        retried = False
        while True:
            published.clear()
            record = await self.read(cred_id)
            if record is UNAVAILABLE:
                if retried or not await self._back_soon(BLIP_WAIT):
                    return Turn()
                retried = True
                continue
            if record is not None and not same(held, record):
                return Turn(newer=record)
            lock = self._lock(cred_id)
            taken = await self._try_lock(lock)
            if taken is None:
                if retried or not await self._back_soon(BLIP_WAIT):
                    return Turn()
                retried = True
                continue
            if taken:
                record = await self.read(cred_id)  # someone may have refreshed meanwhile
                if record is UNAVAILABLE or (record is not None and not same(held, record)):
                    await self._unlock(lock, cred_id)
                    return Turn() if record is UNAVAILABLE else Turn(newer=record)
                return Turn(lock=lock, record=record)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Turn(gave_up=True)
            try:
                async with asyncio.timeout(min(remaining, WAIT_POLL)):
                    await published.wait()
            except asyncio.TimeoutError:
                pass

    async def share(self, cred_id: str, turn: Turn, token: TokenFile) -> None:
        """The refreshed `token`, into the store before anything uses it (under the lock)."""
        if turn.lock is None:
            return
        turn.written = await self._write(cred_id, token, turn.record)
        if turn.written is None and await self._back_soon(BLIP_WAIT):
            # Only this instance knows the new token now: worth a second try while it holds
            # the lock (failing that, the reconnection's resync pushes it from the file).
            turn.written = await self._write(cred_id, token, turn.record)

    async def finish(self, cred_id: str, turn: Turn) -> None:
        if turn.lock is None:
            return
        if turn.written is not None:
            await self._publish(cred_id)
        await self._unlock(turn.lock, cred_id)

    async def newer_than(self, cred_id: str, token: TokenFile) -> Record | None:
        """The shared record when it holds another token than `token` (refused just now: the
        store may know a newer one); None when it holds the same or none; UNAVAILABLE when it
        cannot tell."""
        record = await self.read(cred_id)
        if record is UNAVAILABLE and await self._back_soon(BLIP_WAIT):
            record = await self.read(cred_id)
        if record is UNAVAILABLE:
            return UNAVAILABLE
        return record if record is not None and not same(token, record) else None

    # -- seeding -----------------------------------------------------------------------------

    async def resync(self) -> None:
        """On (re)connection: every file against its record (the module docstring's rule)."""
        for entry in self.auth.entries():
            await self.reconcile(entry.credential.id)
        self._first_sync().set()

    def files_changed(self, added: list[str], changed: list[str]) -> None:
        """The watcher's report: new files seed the store, edited ones (a new login) replace."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # loading before the loop runs: the first connection's resync covers it
        for cred_id in [*added, *changed]:
            self._spawn(loop, self.reconcile(cred_id, edited=cred_id in changed))

    async def reconcile(self, cred_id: str, *, edited: bool = False) -> None:
        entry = self.auth.entry(cred_id)
        if not self.covers(entry) or not self.store.up:
            return
        assert entry is not None
        record = await self.read(cred_id)
        if record is UNAVAILABLE or (record is not None and same(entry.token, record)):
            return
        if record is not None and not self._file_wins(entry, record, edited):
            await self._adopt(cred_id, record)
            return
        await self._push(cred_id)

    def _file_wins(self, entry: Entry, record: Record, edited: bool) -> bool:
        if self.cipher.digest(entry.token.refresh_token) in record.replaced:
            return False
        if edited:
            return True
        try:
            modified = entry.path.stat().st_mtime
        except OSError:
            return False
        return modified > record.updated_at

    async def _push(self, cred_id: str) -> None:
        lock = self._lock(cred_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_ttl + 1.0
        while not (taken := await self._try_lock(lock)):
            if taken is None or loop.time() > deadline:
                return
            await asyncio.sleep(WAIT_POLL)
        try:
            entry = self.auth.entry(cred_id)
            record = await self.read(cred_id)
            if not self.covers(entry) or record is UNAVAILABLE:
                return
            assert entry is not None
            if record is not None and same(entry.token, record):
                return
            if await self._write(cred_id, entry.token, record) is not None:
                await self._publish(cred_id)
                logger.info(f"cliproxy: {entry.credential.label}: token put into the shared store")
        finally:
            await self._unlock(lock, cred_id)

    # -- publications ------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the publications while the store is up: wake waiting refreshes, adopt."""
        loop = asyncio.get_running_loop()
        while True:
            if not self.store.up:
                await asyncio.sleep(WAIT_POLL)
                continue
            pubsub = self.store.client.pubsub()
            try:
                await subscribe(pubsub, self.channel)
                while self.store.up:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    cred_id = message["data"].decode("utf-8", "replace")
                    if (event := self._published.get(cred_id)) is not None:
                        event.set()
                    self._spawn(loop, self.reconcile(cred_id))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - RedisError, OSError, a timeout: the store is gone
                self.store.lost(e)
                await asyncio.sleep(WAIT_POLL)
            finally:
                try:
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - never a token in a traceback
                logger.error(f"cliproxy: syncing a shared token failed ({type(e).__name__})")

        task = loop.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
