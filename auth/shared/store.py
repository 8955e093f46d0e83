"""The connection to the state store that several proxy instances share (Redis or Valkey).

Nothing here decides what is shared: the pool, the refresher and the management API each put
their own keys under `key(...)`. This module owns the one thing they have in common, the
connection and its health: an operation on a store that is down returns its caller's local
fallback at once, so that no request waits for Redis; one background task reconnects with
backoff and tells the others (`on_connect`) to publish and read back their state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

logger = logging.getLogger("cliproxy")

T = TypeVar("T")

# A store that answers slower than this counts as down until it reconnects: requests must not
# wait on it (loopback or LAN answers in well under a millisecond), but a busy two-core host
# can stall a healthy one for a few hundred milliseconds, and each false alarm costs a resync.
OPERATION_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
RECONNECT_FIRST = 0.5
RECONNECT_CAP = 30.0


def redacted(url: str) -> str:
    """`url` without its user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def instance_name() -> str:
    """This process among the instances sharing a store: host, pid, and a random tail (pids
    repeat across machines and restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SharedStore:
    def __init__(self, url: str, prefix: str, *, instance: str | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.instance = instance or instance_name()
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=OPERATION_TIMEOUT,
            # Failing over to local state is the retry: redis-py's own would hold the request.
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            client_name=f"cliproxy-{self.instance}",
        )
        self._up = False
        self._down_logged = False
        # (Re)connections whose `on_connect` callbacks all ran: state shared from then on.
        self.synchronised = 0
        self._wake = asyncio.Event()
        self._stopped = False
        # Run after every (re)connection, in order: each concern pushes what it holds and reads
        # back what the others wrote meanwhile.
        self.on_connect: list[Callable[[], Awaitable[None]]] = []

    @property
    def up(self) -> bool:
        return self._up

    @property
    def address(self) -> str:
        return redacted(self.url)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def ping(self) -> str | None:
        """None when the store answers, else why not (for the start-up check)."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT + OPERATION_TIMEOUT):
                await self.client.ping()
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            return _why(e)
        return None

    async def call(self, operation: Callable[[redis.Redis], Awaitable[T]], fallback: T) -> T:
        """`operation`'s result, or `fallback` when the store is down or fails now (which marks
        it down until the reconnect task finds it back)."""
        if not self._up:
            return fallback
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT):
                return await operation(self.client)
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            self.lost(e)
            return fallback

    def lost(self, error: BaseException) -> None:
        """An operation found the store gone: serve on local state until it is back."""
        if not self._up:
            return
        self._up = False
        if not self._down_logged:
            self._down_logged = True
            logger.warning(
                f"cliproxy: state store {self.address} unreachable ({_why(error)}); serving on this "
                "instance's own state and reconnecting in the background"
            )
        self._wake.set()

    async def run(self) -> None:
        """Connect, and reconnect whenever an operation found the store gone, with backoff."""
        delay = RECONNECT_FIRST
        while not self._stopped:
            if self._up:
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self._connect():
                delay = RECONNECT_FIRST
                continue  # past the stop check first: `stop` may have come meanwhile
            if not self._down_logged:
                # Only a start with `state-store-required: false` gets here unlogged.
                self._down_logged = True
                logger.warning(
                    f"cliproxy: state store {self.address} unreachable; starting on this "
                    "instance's own state and connecting in the background"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_CAP)

    async def _connect(self) -> bool:
        if await self.ping() is not None:
            return False
        self._up = True
        # A copy: one registered meanwhile is for the next connection (its owner starts itself).
        for callback in list(self.on_connect):
            try:
                await callback()
            except (RedisError, OSError, asyncio.TimeoutError) as e:
                self.lost(e)
                return False
            except Exception as e:  # noqa: BLE001 - a bug in one concern must not end the reconnecting
                logger.exception("cliproxy: could not resynchronise with the state store")
                self.lost(e)
                return False
        self.synchronised += 1
        if self._down_logged:
            self._down_logged = False
            logger.info(f"cliproxy: state store {self.address} is back; state shared again")
        return True

    def stop(self) -> None:
        """End `run` at its next step, cancelled or not. (Every wait in these modules is an
        `asyncio.timeout` block, never `asyncio.wait_for`: on Python 3.11 `wait_for` swallows a
        cancellation that races the await it wraps, and a background loop that lost its
        cancellation keeps the shutdown waiting for ever.)"""
        self._stopped = True
        self._up = False
        self._wake.set()

    async def aclose(self) -> None:
        self._up = False
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            pass


async def subscribe(pubsub, channel: str, timeout: float = 2.0) -> None:
    """Subscribe `pubsub` to `channel` once the server confirms it. redis-py only sends the
    SUBSCRIBE: until the server has processed it, a publication on the channel is not
    delivered, so a read-back right after the call could miss what was announced meanwhile.
    (`pubsub` must not drop subscribe replies itself: made without ignore_subscribe_messages.)"""
    async with asyncio.timeout(timeout):
        await pubsub.subscribe(channel)
        while True:
            reply = await pubsub.get_message(timeout=timeout)
            if reply is not None and reply.get("type") == "subscribe":
                return


def _why(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
