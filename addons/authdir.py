"""Keeps the pool in step with the auth directory: token files added, edited, renamed or removed
take effect within a second, without a restart.

watchdog observes the directory on its own thread and only schedules a rescan on the event loop;
the store and the pool are changed on the event loop only. The proxy's own writes (temp files,
then a rename) are recognised by the store and cause no reload.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from addons.watching import DebouncedWatch
from auth.store import ScanResult
from auth.tokens import is_temporary
from routing.config import Config
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

# Writers save in bursts (create, write, rename): rescan once the burst is over.
RESCAN_DEBOUNCE = 0.15


class AuthDirWatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._watcher: DebouncedWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        runtime.config_listeners.append(self._config_applied)

    # -- hooks -----------------------------------------------------------------------------

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch()
        count = len(self.runtime.store.credentials())
        if self.runtime.store.directory is not None:
            logger.info(f"cliproxy: auth directory {self.runtime.store.directory}: {count} credential(s)")

    def done(self) -> None:
        self._stop()
        if self._config_applied in self.runtime.config_listeners:
            self.runtime.config_listeners.remove(self._config_applied)

    # -- following the config --------------------------------------------------------------

    def _config_applied(self, config: Config) -> None:
        directory = config.auth_path.resolve()
        if directory == self.runtime.store.directory:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            logger.warning(f"cliproxy: cannot create the auth directory {directory}: {e.strerror}")
        self._apply(self.runtime.store.set_directory(directory))
        if self._loop is not None:
            self._watch()

    def _apply(self, result: ScanResult) -> None:
        if not result:
            return
        self.runtime.refresher.forget([*result.changed, *result.removed])
        if (shared := self.runtime.refresher.shared) is not None:
            shared.files_changed(result.added, result.changed)  # a new login replaces the shared one
        self.runtime.publish_auth()

    # -- watching --------------------------------------------------------------------------

    def _watch(self) -> None:
        directory = self.runtime.store.directory
        if self._loop is None or directory is None:
            return
        if self._watcher is not None and self._watcher.directory == directory:
            return
        self._stop()
        if not directory.is_dir():
            logger.warning(f"cliproxy: auth directory {directory} does not exist; not watching it")
            return
        self._watcher = DebouncedWatch(
            self._loop, directory, lambda name: not is_temporary(Path(name)), self.rescan, RESCAN_DEBOUNCE
        )
        self._watcher.start()
        # Anything written between the first scan and the watch starting.
        self._watcher.poke()

    def _stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def rescan(self) -> None:
        """Read the directory now (the management API wrote or removed a file): its answer
        then says whether the pool took the file, without waiting for the watcher."""
        self._apply(self.runtime.store.scan())
