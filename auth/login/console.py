"""The terminal side of a login: messages and the countdown on stderr, pasted lines from stdin.

On a terminal the countdown is one line rewritten in place; when a pasted URL is also awaited,
the prompt sits on the line below it and the countdown is redrawn above the cursor, so typing
is not disturbed. Elsewhere (a pipe, a log file) the countdown is a line a minute.
"""

from __future__ import annotations

import math
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import TextIO

_SAVE, _RESTORE, _UP, _CLEAR = "\x1b7", "\x1b8", "\x1b[1A", "\r\x1b[2K"


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.999))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Countdown:
    def __init__(
        self, console: Console, deadline: float, label: str, prompt: str | None, step: float
    ) -> None:
        self.console = console
        self.deadline = deadline
        self.label = label
        self.prompt = prompt
        self.step = step
        self._last_printed: int | None = None
        self._last_status = ""
        self._drawn = False

    def left(self) -> float:
        return self.deadline - self.console.clock()

    def expired(self) -> bool:
        return self.left() <= 0

    def _status(self) -> str:
        return f"{self.label}: {clock_text(self.left())} left (Ctrl-C to cancel)"

    def draw(self) -> None:
        """Draw from scratch at the cursor (a fresh line)."""
        out = self.console.stream
        if self.console.tty:
            self._last_status = self._status()
            out.write(self._last_status + ("\n" + self.prompt if self.prompt else ""))
        else:
            out.write(f"{self.label} (up to {clock_text(self.left())}; Ctrl-C to cancel)...\n")
            if self.prompt:
                out.write(self.prompt + "\n")
        out.flush()
        self._drawn = True
        self._last_printed = math.ceil(self.left() / self.step)

    def tick(self) -> None:
        out = self.console.stream
        if self.console.tty:
            if not self._drawn:
                self.draw()
                return
            status = self._status()
            if status == self._last_status:
                return
            self._last_status = status
            if self.prompt:
                out.write(_SAVE + _UP + _CLEAR + status + _RESTORE)
            else:
                out.write(_CLEAR + status)
            out.flush()
            return
        bucket = math.ceil(self.left() / self.step)
        if bucket != self._last_printed and self.left() >= 1:
            self._last_printed = bucket
            out.write(f"  {clock_text(self.left())} left\n")
            out.flush()

    def erase(self) -> None:
        """Remove the countdown (and the prompt) so that a message can take their place."""
        if not (self.console.tty and self._drawn):
            return
        out = self.console.stream
        out.write(_CLEAR + (_UP + _CLEAR if self.prompt else ""))
        out.flush()
        self._drawn = False

    def line_entered(self) -> None:
        """The user pressed Enter on the prompt: the cursor is on a fresh line below it."""
        if self.console.tty:
            self._drawn = False

    def finish(self) -> None:
        if self.console.tty and self._drawn:
            out = self.console.stream
            out.write(_CLEAR + (_UP + _CLEAR if self.prompt else ""))
            out.flush()
        self._drawn = False
        self.console._active = None


class Console:
    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.tty = _isatty(stream)
        self.clock = clock
        self._active: Countdown | None = None

    def say(self, text: str = "") -> None:
        active = self._active
        if active is not None:
            active.erase()
        self.stream.write(text + "\n")
        self.stream.flush()
        if active is not None and self.tty:
            active.draw()

    def prompt(self, text: str) -> None:
        """A question; the answer is typed on the same line."""
        self.stream.write(text)
        self.stream.flush()

    def countdown(
        self, deadline: float, label: str, *, prompt: str | None = None, step: float = 60.0
    ) -> Countdown:
        self._active = Countdown(self, deadline, label, prompt, step)
        self._active.draw()
        return self._active


class LineReader:
    """Lines typed or pasted on a file descriptor, read without blocking the wait loop.

    POSIX: select() on the descriptor, os.read() on it (no buffered sys.stdin object is held,
    so nothing is left locked when the process exits). Elsewhere: a daemon thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = b""
        try:
            self.tty = os.isatty(fd)
        except OSError:
            self.tty = False
        self._thread_lines: queue.Queue[str | None] | None = None
        if os.name != "posix":
            self._thread_lines = queue.Queue()
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:  # pragma: no cover - non-POSIX only
        assert self._thread_lines is not None
        try:
            with os.fdopen(os.dup(self.fd), "r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    self._thread_lines.put(line)
        except OSError:
            pass
        self._thread_lines.put(None)

    def poll(self, timeout: float) -> list[str]:
        """Complete lines that arrived within `timeout` seconds (sleeps `timeout` at EOF)."""
        if self.eof:
            time.sleep(timeout)
            return []
        if self._thread_lines is not None:  # pragma: no cover - non-POSIX only
            try:
                line = self._thread_lines.get(timeout=timeout)
            except queue.Empty:
                return []
            if line is None:
                self.eof = True
                return []
            return [line.strip()]
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
        except (OSError, ValueError):
            self.eof = True
            return []
        if not ready:
            return []
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            rest, self._buffer = self._buffer, b""
            return [rest.decode("utf-8", "replace").strip()] if rest.strip() else []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in lines]
