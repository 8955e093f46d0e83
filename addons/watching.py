"""Watching a directory for the files that matter (config.yaml, the auth directory's tokens).

watchdog observes on its own thread; the callback runs on the event loop, once a burst of
changes is over (editors and the proxy itself save by writing, then renaming).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

# watchdog also reports opens and plain reads (`closed_no_write`); a watcher reacting to those
# would be woken by its own reload, which reads the file, and reload forever.
_CHANGES = frozenset(
    {EVENT_TYPE_CLOSED, EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED}
)


def is_change(event: FileSystemEvent) -> bool:
    return event.event_type in _CHANGES


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: DebouncedWatch) -> None:
        self.watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Directory events pass too: `accept` decides, so that a directory put where a watched
        # file belongs (`x.json` in the auth directory) is noticed and reported.
        if not is_change(event):
            return
        paths = (event.src_path, getattr(event, "dest_path", ""))
        if any(p and self.watch.accept(Path(str(p))) for p in paths):
            loop = self.watch.loop
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.watch.poke)


class DebouncedWatch:
    """Calls `on_change` on `loop` `delay` seconds after the last change to a file in
    `directory` that `accept` picks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        directory: Path,
        accept: Callable[[Path], bool],
        on_change: Callable[[], None],
        delay: float,
    ) -> None:
        self.loop = loop
        self.directory = directory
        self.accept = accept
        self._on_change = on_change
        self._delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(_Handler(self), str(directory), recursive=False)

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
