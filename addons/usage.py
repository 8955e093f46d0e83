"""Accounting: one log line per client request the pool served, and its row in the usage
database (`usage-db`, SQLite beside config.yaml unless the config says otherwise)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from mitmproxy.log import LegacyLogEvents

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


def _heard(level: int) -> bool:
    """Whether a record at `level` reaches a reader. mitmproxy lets every record through its
    loggers and filters in its handlers (termlog_verbosity), so `isEnabledFor` is always true;
    its bridge to the deprecated `add_log` event takes everything and reaches no reader of ours
    or of mitmproxy's, while costing a hook call across every addon per record."""
    node: logging.Logger | None = logger
    while node is not None:
        for handler in node.handlers:
            if level >= handler.level and not isinstance(handler, LegacyLogEvents):
                return True
        node = node.parent if node.propagate else None
    return False


def _not_ours(record: logging.LogRecord) -> bool:
    return not record.name.startswith("cliproxy")


def keep_off_the_legacy_bridge() -> None:
    """Keep this proxy's records from mitmproxy's bridge to the deprecated `add_log` event.
    Nothing reads it (mitmproxy's own addons moved to `logging`), and each record through it
    is formatted again and wakes the event loop for a hook call across every addon: measured
    at about 5% of the proxy's CPU per request with one line per request."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LegacyLogEvents) and _not_ours not in handler.filters:
            handler.addFilter(_not_ours)


class Accounting:
    """Logs every request and keeps its row in the usage store, which it opens, moves and
    closes as `usage-db` says (`runtime.usage`, for whoever reads usage)."""

    def __init__(self, runtime: Runtime, config_loader: ConfigLoader, dispatcher: Dispatcher) -> None:
        self.runtime = runtime
        self.config_loader = config_loader
        self._path: str | None = None  # where runtime.usage is open
        self._running = False
        dispatcher.finished.append(self.finished)
        runtime.config_listeners.append(self._follow)

    def running(self) -> None:
        self._running = True
        keep_off_the_legacy_bridge()
        self._follow(self.runtime.config)

    def done(self):
        # Synchronous on a script reload: the last batch is written in a thread, and the
        # returned future is awaited on shutdown.
        self._running = False
        return self._close()

    def finished(self, record: UsageRecord, path: str) -> None:
        if logger.isEnabledFor(logging.INFO) and _heard(logging.INFO):
            logger.info(log_line(record, path))
        if (store := self.runtime.usage) is not None:
            store.record(record)
            # Shared too when usage is kept at all (`usage-db` off keeps none anywhere).
            if (stream := self.runtime.usage_stream) is not None:
                stream.record(record)

    def _close(self):
        store, self.runtime.usage, self._path = self.runtime.usage, None, None
        return None if store is None else background(asyncio.to_thread(store.close))

    def _follow(self, config: Config) -> None:
        """Open, move or close the store as `usage-db` says."""
        if not self._running:
            return
        folder = self.config_loader.path.parent if self.config_loader.path else None
        path = config.usage_path(folder) if folder is not None else None
        if path == self._path and self.runtime.usage is not None:
            self.runtime.usage.retention_days = config.usage_retention_days
            return
        self._close()
        if path is None:
            return
        try:
            self.runtime.usage = UsageStore(path, config.usage_retention_days)
        except (sqlite3.Error, OSError) as e:
            logger.error(f"cliproxy: usage not kept: cannot open {path}: {e}")
            return
        self._path = path
        logger.debug(f"cliproxy: usage kept in {path}")
