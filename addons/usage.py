"""Accounting: one log line per client request the pool served, and its row in the usage
database (`usage-db`, SQLite beside config.yaml unless the config says otherwise)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from addons.config import ConfigLoader
from addons.dispatch import Dispatcher, background
from routing.config import Config
from routing.runtime import Runtime
from routing.usage import UsageRecord, UsageStore

logger = logging.getLogger("cliproxy")


def log_line(record: UsageRecord, path: str) -> str:
    """The request in one line: what was asked, who served it, how it went. No secret: the
    credential's label and the client key's label only."""
    model = record.model
    if record.upstream_model and record.upstream_model != record.model:
        model += f" as {record.upstream_model}"
    via = f"{record.provider} {record.credential}" if record.credential else "no credential"
    outcome = f"{record.status} {record.error}" if record.error else str(record.status)
    line = f"cliproxy: {record.client_api} {path} {model} via {via}: {outcome} in {record.latency_ms:.0f}ms"
    if record.first_byte_ms is not None:
        line += f" (first byte {record.first_byte_ms:.0f}ms)"
    line += f", {record.attempts} attempt{'' if record.attempts == 1 else 's'}"
    if record.input_tokens is not None:
        line += f", tokens {record.input_tokens} in / {record.output_tokens} out"
    return line + f", client {record.client_key}"


class Accounting:
    def __init__(self, runtime: Runtime, config_loader: ConfigLoader, dispatcher: Dispatcher) -> None:
        self.runtime = runtime
        self.config_loader = config_loader
        self.store: UsageStore | None = None
        self._path: str | None = None  # where `store` is open
        self._running = False
        dispatcher.finished.append(self.finished)
        runtime.config_listeners.append(self._follow)

    def running(self) -> None:
        self._running = True
        self._follow(self.runtime.config)

    def done(self):
        # Synchronous on a script reload: the last batch is written in a thread, and the
        # returned future is awaited on shutdown.
        self._running = False
        store, self.store, self._path = self.store, None, None
        if store is not None:
            return background(asyncio.to_thread(store.close))
        return None

    def finished(self, record: UsageRecord, path: str) -> None:
        logger.info(log_line(record, path))
        if self.store is not None:
            self.store.record(record)

    def _follow(self, config: Config) -> None:
        """Open, move or close the store as `usage-db` says."""
        if not self._running:
            return
        folder = self.config_loader.path.parent if self.config_loader.path else None
        path = config.usage_path(folder) if folder is not None else None
        if path == self._path and self.store is not None:
            self.store.retention_days = config.usage_retention_days
            return
        old, self.store, self._path = self.store, None, None
        if old is not None:
            background(asyncio.to_thread(old.close))
        if path is None:
            return
        try:
            self.store = UsageStore(path, config.usage_retention_days)
        except (sqlite3.Error, OSError) as e:
            logger.error(f"cliproxy: usage not kept: cannot open {path}: {e}")
            return
        self._path = path
        logger.debug(f"cliproxy: usage kept in {path}")
