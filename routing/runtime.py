"""The live state the addons share: the config in force, the auth directory's credentials, the
router built from both, the pool, the quota each credential's upstream reported, the usage
store and the token refresher."""

from __future__ import annotations

import logging
from collections.abc import Callable

from auth.credential import Credential
from auth.pool import Pool
from auth.quota import QuotaBook
from auth.refresh import Refresher
from auth.shared.instances import Heartbeat
from auth.shared.rests import SharedPool
from auth.shared.store import SharedStore
from auth.store import AuthStore
from routing.config import Config
from routing.router import Router, credentials_from_config
from routing.shared_usage import UsageStream, UsageView
from routing.usage import UsageStore
from routing.upstream import upstream_proxy


logger = logging.getLogger("cliproxy")


class Runtime:
    def __init__(self, config: Config | None = None) -> None:
        self.config = Config()
        self.router = Router(())
        self.pool = Pool()
        self.quota = QuotaBook()
        # Open while `usage-db` keeps usage (addons/usage.py opens and closes it).
        self.usage: UsageStore | None = None
        self.store = AuthStore()
        # The state store shared with other instances (`state-store`); None: this process only.
        self.shared: SharedStore | None = None
        # The pool's link to it (rests, switches, cursors, quota) and this instance's heartbeat.
        self.shared_pool: SharedPool | None = None
        self.heartbeat: Heartbeat | None = None
        # Usage rows through it: this instance's writer, and every instance's rows to query.
        self.usage_stream: UsageStream | None = None
        self.usage_view: UsageView | None = None
        self.refresher = Refresher(
            self.store, overrides=lambda: self.config.upstream_overrides, publish=self.publish_auth
        )
        self._config_credentials: list[Credential] = []
        # Credential id -> the model ids its upstream listed (addons/listings.py keeps it).
        self.listings: dict[str, tuple[str, ...]] = {}
        self._proxy_warnings: set[str] = set()
        # Called with each config put in force (the auth-dir watcher follows `auth-dir`).
        self.config_listeners: list[Callable[[Config], None]] = []
        if config is not None:
            self.apply(config)

    def apply(self, config: Config) -> None:
        """Put `config` in force. Cooldowns of credentials that stay in the config survive."""
        self._config_credentials = credentials_from_config(config)
        self.config = config
        self.pool.configure(
            config.routing.pool_strategy,
            disable_cooling=config.disable_cooling,
            transient_cooldown=config.transient_cooldown,
            soft_threshold=config.quota_soft_threshold,
        )
        self._rebuild()
        for listener in self.config_listeners:
            listener(config)

    def publish_auth(self) -> None:
        """The auth directory's credentials changed (a file, or a refreshed token)."""
        self._rebuild()

    def set_listing(self, credential_id: str, models: tuple[str, ...] | None) -> None:
        """What a credential's upstream listed (None: use its built-in list), in force at once."""
        if models is None:
            if self.listings.pop(credential_id, None) is None:
                return
        elif self.listings.get(credential_id) == models:
            return
        else:
            self.listings[credential_id] = models
        self._rebuild()

    def _rebuild(self) -> None:
        credentials = [
            c
            for c in (*self._config_credentials, *self.store.credentials())
            if self._proxy_supported(c)
        ]
        ids = {c.id for c in credentials}
        # A credential that left takes its listed models with it.
        self.listings = {k: v for k, v in self.listings.items() if k in ids}
        self.router = Router(
            credentials, force_model_prefix=self.config.force_model_prefix, listings=self.listings
        )
        self.pool.forget(ids)
        self.quota.forget(ids)

    def _proxy_supported(self, cred: Credential) -> bool:
        # Fail closed: a credential whose proxy cannot be honoured must not go out directly.
        try:
            upstream_proxy(cred, self.config.proxy_url)
        except ValueError as e:
            if cred.id not in self._proxy_warnings:
                self._proxy_warnings.add(cred.id)
                logger.warning(f"cliproxy: {e}; left out of the pool")
            return False
        return True
