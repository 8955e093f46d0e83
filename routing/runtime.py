"""The live state the addons share: the config in force, the router built from it, the pool."""

from __future__ import annotations

from auth.pool import Pool
from routing.config import Config
from routing.router import Router, credentials_from_config


class Runtime:
    def __init__(self, config: Config | None = None) -> None:
        self.config = Config()
        self.router = Router(())
        self.pool = Pool()
        if config is not None:
            self.apply(config)

    def apply(self, config: Config) -> None:
        """Put `config` in force. Cooldowns of credentials that stay in the config survive."""
        credentials = credentials_from_config(config)
        self.router = Router(credentials, force_model_prefix=config.force_model_prefix)
        self.pool.configure(
            config.routing.pool_strategy,
            disable_cooling=config.disable_cooling,
            transient_cooldown=config.transient_cooldown,
        )
        self.pool.forget({c.id for c in credentials})
        self.config = config
