"""The background token refresher: one task, started in `running`, stopped in `done`.

mitmproxy reloads a script by calling `done` synchronously on the old addons, so `done` is a
plain function: it cancels the task and returns a future that finishes once the task has
(awaited by mitmproxy on shutdown). Both are kept referenced, so neither is garbage-collected
mid-flight, and a reload never leaves two refreshers running.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx

from auth.refresh import CHECK_INTERVAL, TASK_NAME, running_tasks
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

_STOPPING: set[asyncio.Future] = set()


def _interval() -> float:
    try:
        return float(ctx.options.cliproxy_refresh_interval)
    except (AttributeError, ValueError):
        return CHECK_INTERVAL


async def _wait(task: asyncio.Task) -> None:
    await asyncio.wait([task])


class RefreshLoop:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None

    def load(self, loader) -> None:
        # mitmproxy options are str, int or bool: seconds as text, fractions allowed.
        loader.add_option(
            "cliproxy_refresh_interval",
            str,
            f"{CHECK_INTERVAL:g}",
            "Seconds between checks for OAuth tokens due for a refresh.",
        )

    def running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        refresher = self.runtime.refresher
        self._task = asyncio.get_running_loop().create_task(
            refresher.run(_interval), name=TASK_NAME
        )
        logger.debug(f"cliproxy: token refresh task started; refresh tasks running: {running_tasks()}")

    def done(self):
        task, self._task = self._task, None
        if task is None:
            return None
        task.cancel()
        waiter = asyncio.ensure_future(_wait(task))
        _STOPPING.add(waiter)
        waiter.add_done_callback(_STOPPING.discard)
        return waiter
