"""Watching a directory for the files that matter (config.yaml, the auth directory's tokens).

watchdog observes on its own thread; the callback runs on the event loop, once a burst of
changes is over (editors and the proxy itself save by writing, then renaming).

The directory is often shared with files that change all the time (the proxy's own log, the
usage database beside config.yaml, a benchmark's output), so the kernel is asked only for the
events a served file can need, and every other path is turned away on the watchdog thread by a
string comparison before anything is allocated, scheduled or locked.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

# What a save looks like: written and closed in place, created, removed, or renamed into place
# (directories too, so that one put where a token file belongs is reported). Left out: plain
# modifications and attribute changes, which a writer keeping its file open (a log, SQLite's
# journal) makes on every write, and opens and reads (`closed_no_write`), which the watcher's own
# reload would make, waking it forever.
_SERVED_EVENTS = [
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
_CHANGES = frozenset(cls.event_type for cls in _SERVED_EVENTS)


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: DebouncedWatch) -> None:
        self.watch = watch

    # `dispatch` rather than `on_any_event`: the base class looks up a method per event first.
    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGES:
            return
        watch = self.watch
        if watch.serves(event.src_path) or watch.serves(getattr(event, "dest_path", "")):
            watch.served_events += 1
            loop = watch.loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(watch.poke)


class DebouncedWatch:
    """Calls `on_change` on `loop` `delay` seconds after the last change to a file of
    `directory` whose name `accept` picks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        directory: Path,
        accept: Callable[[str], bool],
        on_change: Callable[[], None],
        delay: float,
    ) -> None:
        self.loop = loop
        self.directory = directory
        self.accept = accept
        # Events that passed the path filter (and so were scheduled): what a test can count.
        self.served_events = 0
        self._prefix = os.path.join(str(directory), "")
        self._on_change = on_change
        self._delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(
            _Handler(self), str(directory), recursive=False, event_filter=_SERVED_EVENTS
        )

    def serves(self, path: str | bytes) -> bool:
        """Whether `path` (as watchdog reports it) is a file of the directory `accept` picks."""
        if not isinstance(path, str) or not path.startswith(self._prefix):
            return False
        name = path[len(self._prefix) :]
        return bool(name) and os.sep not in name and self.accept(name)

    def start(self) -> None:
        self._observer.start()

    def poke(self) -> None:
        """Schedule the callback (on the event loop's thread), restarting the debounce."""
        if self._pending:
            self._pending.cancel()
        self._pending = self.loop.call_later(self._delay, self._fire)

    def stop(self) -> None:
        if self._pending:
            self._pending.cancel()
            self._pending = None
        self._observer.stop()
        self._observer.join(timeout=2)

    def _fire(self) -> None:
        self._pending = None
        self._on_change()
