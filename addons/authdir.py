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

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from addons.watching import is_change
from auth.store import ScanResult
from auth.tokens import is_temporary
from routing.config import Config
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

# Writers save in bursts (create, write, rename): rescan once the burst is over.
RESCAN_DEBOUNCE = 0.15


class _DirChanged(FileSystemEventHandler):
    def __init__(self, notify) -> None:
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or not is_change(event):
            return
        paths = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if any(not is_temporary(Path(str(p))) for p in paths):
            self.notify()


class AuthDirWatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._observer: Observer | None = None
        self._watched: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None
        runtime.config_listeners.append(self._config_applied)

    # -- hooks -----------------------------------------------------------------------------

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch()
        count = len(self.runtime.store.credentials())
        if self.runtime.store.directory is not None:
            logger.info(f"cliproxy: auth directory {self.runtime.store.directory}: {count} credential(s)")

    def done(self) -> None:
        if self._pending:
            self._pending.cancel()
            self._pending = None
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
        self.runtime.publish_auth()

    # -- watching --------------------------------------------------------------------------

    def _watch(self) -> None:
        directory = self.runtime.store.directory
        if directory is None or (directory == self._watched and self._observer is not None):
            return
        self._stop()
        if not directory.is_dir():
            logger.warning(f"cliproxy: auth directory {directory} does not exist; not watching it")
            return
        observer = Observer()
        observer.daemon = True
        observer.schedule(_DirChanged(self._changed_from_thread), str(directory), recursive=False)
        observer.start()
        self._observer, self._watched = observer, directory
        # Anything written between the first scan and the watch starting.
        self._schedule_rescan()

    def _stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
            self._watched = None

    def _changed_from_thread(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_rescan)

    def _schedule_rescan(self) -> None:
        if self._loop is None:
            return
        if self._pending:
            self._pending.cancel()
        self._pending = self._loop.call_later(RESCAN_DEBOUNCE, self._rescan)

    def _rescan(self) -> None:
        self._pending = None
        self._apply(self.runtime.store.scan())
