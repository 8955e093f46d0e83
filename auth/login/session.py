"""What every login flow shares: its options, the HTTP client, the terminal, the result record.

A flow is a function `login(session) -> Record`; it talks to the provider only through
`session.http` (so every vendor host goes through `upstream-overrides`), to the user only through
`session.console`, and returns the token file's name and content. Writing it is the caller's
job (`auth.login.save`), at the very end, so that an interrupted login leaves nothing behind.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from auth.login.client import OAuthClient
from auth.login.console import Console
from auth.login.errors import LoginError, LoginTimeout, TransientLoginError
from auth.tokens import format_time

__all__ = ["LoginError", "LoginOptions", "LoginTimeout", "Record", "Session", "TransientLoginError"]

DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class LoginOptions:
    no_browser: bool = False
    timeout: float = DEFAULT_TIMEOUT
    callback_port: int | None = None  # None: the provider's registered port
    device: bool = False  # codex: the device-code variant
    project_id: str = ""  # gemini: Code Assist project(s), comma-separated
    email: str = ""  # qwen: the label its file is named after (Qwen does not say who you are)


@dataclass(slots=True)
class Record:
    """A finished login: the file name CLIProxyAPI would use and the JSON it would write."""

    provider: str
    file_name: str
    data: dict[str, Any]
    account: str  # who signed in, for the summary (an email, or a description)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(when: datetime.datetime | None = None) -> str:
    return format_time(when or utc_now())


def expiry_after(seconds: float | str | None, now: datetime.datetime | None = None) -> str:
    """`expired` for a token that lives `seconds` (the token response's expires_in)."""
    try:
        lifetime = float(seconds or 0)
    except (TypeError, ValueError):
        lifetime = 0.0
    return rfc3339((now or utc_now()) + datetime.timedelta(seconds=lifetime))


def _has_graphical_browser() -> bool:
    """On Linux and the BSDs without a display, `webbrowser` falls back to console browsers
    (lynx, w3m) that take over this very terminal: treat that as "no browser"."""
    if sys.platform in ("darwin", "win32") or os.environ.get("BROWSER"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _system_open(url: str) -> bool:
    if not _has_graphical_browser():
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


@dataclass
class Session:
    """One login run.

    `rewrite` maps a vendor URL to where it really goes (`upstream-overrides`); `open_url` is the
    browser (tests pass a scripted one); `stdin` is a file descriptor on which a pasted redirect
    URL may arrive (None: do not read one)."""

    auth_dir: Path
    provider: str = ""
    options: LoginOptions = field(default_factory=LoginOptions)
    rewrite: Callable[[str], str] = lambda url: url
    open_url: Callable[[str], bool] | None = None
    stdin: int | None = None
    err: TextIO | None = None
    transport: httpx.BaseTransport | None = None
    clock: Callable[[], float] = time.monotonic
    http: OAuthClient = field(init=False)
    console: Console = field(init=False)

    def __post_init__(self) -> None:
        self.http = OAuthClient(self.rewrite, transport=self.transport)
        self.console = Console(self.err if self.err is not None else sys.stderr, clock=self.clock)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deadline(self, limit: float | None = None) -> float:
        """The monotonic time the interactive wait ends: `--timeout`, or the provider's own limit
        (a device code's lifetime) when that is shorter."""
        seconds = self.options.timeout
        if limit is not None and limit > 0:
            seconds = min(seconds, limit)
        return self.clock() + seconds

    def browse(self, url: str, what: str) -> None:
        """Show `url` and, unless --no-browser, open it. The URL is printed either way: the
        browser may be on another machine, or may not open at all."""
        say = self.console.say
        if self.options.no_browser:
            say(f"Open this address in a browser to {what}:")
            say(f"    {url}")
            return
        opener = self.open_url or _system_open
        try:
            opened = opener(url) is not False
        except Exception:  # a broken browser hook must not end the login
            opened = False
        if opened:
            say(f"Your browser should now show the page to {what}. If it did not, open:")
        else:
            say(f"Could not open a browser here; open this address in one to {what}:")
        say(f"    {url}")
