"""OAuth tokens across the instances of one state store (auth.shared.tokens): set up when the
config names a store and a key, with one task following the other instances' publications.

Without a key (`state-store-key`, or CLIPROXY_STATE_KEY), tokens stay on each instance and the
proxy says so once; the rest of the pool state is still shared.
"""

from __future__ import annotations

import asyncio
import logging
import os

from mitmproxy import ctx, exceptions

from auth.shared.tokens import DEFAULT_LOCK_TTL, KEY_ENV, SharedTokens
from routing.config import Config
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

_STOPPING: set[asyncio.Future] = set()


def _lock_ttl() -> float:
    try:
        return float(ctx.options.cliproxy_token_lock_ttl)
    except (AttributeError, ValueError):
        return DEFAULT_LOCK_TTL


class SharedTokenSync:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._tokens: SharedTokens | None = None
        self._source: tuple[object, str] | None = None  # (store, key) the tokens were set up for
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._said_local: object = None
        # After SharedState's listener (it registers first): the store is in place when this runs.
        runtime.config_listeners.append(self._follow)

    def load(self, loader) -> None:
        loader.add_option(
            "cliproxy_token_lock_ttl",
            str,
            f"{DEFAULT_LOCK_TTL:g}",
            "Seconds an OAuth refresh lock in the shared state store lasts: how long the other "
            "instances wait before refreshing in place of an instance that died mid-refresh. Keep "
            "it above the token endpoint's 30 s timeout.",
        )

    def configure(self, updated) -> None:
        if "cliproxy_token_lock_ttl" not in updated:
            return
        try:
            ttl = float(ctx.options.cliproxy_token_lock_ttl)
        except ValueError:
            ttl = 0.0
        if not ttl > 0:
            raise exceptions.OptionsError("cliproxy_token_lock_ttl: a number of seconds above 0")
        if self._tokens is not None:
            self._tokens.lock_ttl = ttl

    def _follow(self, config: Config) -> None:
        store = self.runtime.shared
        key = os.environ.get(KEY_ENV) or config.state_store_key
        if self._source == (store, key):
            return
        self._stop()
        self._source = (store, key)
        if store is None:
            return
        if not key:
            if self._said_local is not store:
                self._said_local = store
                logger.warning(
                    f"cliproxy: state-store {store.address} has no state-store-key (nor {KEY_ENV}): OAuth "
                    "tokens are NOT shared; each instance refreshes its own logins (with rotating refresh "
                    "tokens, give each instance logins of its own). Cooldowns and the rest are shared."
                )
            return
        tokens = SharedTokens(store, key, self.runtime.store, self.runtime.refresher.adopt, lock_ttl=_lock_ttl())
        store.on_connect.append(tokens.resync)
        self._tokens = tokens
        self.runtime.refresher.shared = tokens
        logger.info(f"cliproxy: OAuth tokens shared through {store.address}, encrypted with the state-store key")
        if self._loop is not None:
            self._start()

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start()

    def _start(self) -> None:
        if self._tokens is None or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._tokens.run(), name="cliproxy-shared-tokens")

    def _stop(self):
        tokens, self._tokens = self._tokens, None
        task, self._task = self._task, None
        if tokens is None:
            return None
        if self.runtime.refresher.shared is tokens:
            self.runtime.refresher.shared = None
        if tokens.resync in tokens.store.on_connect:
            tokens.store.on_connect.remove(tokens.resync)
        if task is not None:
            task.cancel()

        async def close() -> None:
            if task is not None:
                await asyncio.wait([task])
            await tokens.aclose()

        try:
            waiter = asyncio.ensure_future(close())
        except RuntimeError:  # no event loop yet: nothing was started
            return None
        _STOPPING.add(waiter)
        waiter.add_done_callback(_STOPPING.discard)
        return waiter

    def done(self):
        self._source = None
        return self._stop()
