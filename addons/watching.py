"""What the file watchers (config.yaml, the auth directory) react to."""

from __future__ import annotations

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
)

# watchdog also reports opens and plain reads (`closed_no_write`); a watcher reacting to those
# would be woken by its own reload, which reads the file, and reload forever.
_CHANGES = frozenset(
    {EVENT_TYPE_CLOSED, EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED}
)


def is_change(event: FileSystemEvent) -> bool:
    return event.event_type in _CHANGES
