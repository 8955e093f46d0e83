"""Device-code logins (RFC 8628): show a code and a page, then poll until the user approves.

Polling honours the server's `interval`, adds 5 s on `slow_down`, keeps going on
`authorization_pending` and on network trouble, and stops on `expired_token`, `access_denied`,
the code's `expires_in` or `--timeout`, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from auth.login.console import clock_text
from auth.login.errors import LoginError, LoginTimeout, TransientLoginError

if TYPE_CHECKING:
    from auth.login.session import Session

T = TypeVar("T")

DEFAULT_INTERVAL = 5.0
SLOW_DOWN_STEP = 5.0  # RFC 8628 section 3.5
_TICK = 0.25


class SlowDown(Exception):
    """The server asked to poll less often."""


def parse_interval(value: Any, default: float = DEFAULT_INTERVAL) -> float:
    """`interval` as a number of seconds (some servers send it as a string); `default` when
    absent or not positive."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def oauth_poll_result(session: Session, url: str, what: str, response: httpx.Response) -> dict | None:
    """Interpret an RFC 8628 token poll: the token response, None while pending, `SlowDown`, or
    an error. Some servers (Kimi) answer the pending states with 200."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    error = body.get("error")
    if response.status_code == 200 and not error and body.get("access_token"):
        return body
    if error == "authorization_pending":
        return None
    if error == "slow_down":
        raise SlowDown
    command = f"`cliproxy auth {session.provider}`"
    if error == "expired_token":
        raise LoginError(f"The code expired before it was approved; nothing was written. Run {command} again.")
    if error == "access_denied":
        raise LoginError(f"The sign-in was denied in the browser; nothing was written. Run {command} to try again.")
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientLoginError(session.http.failure(what, url, response))
    if response.status_code == 200:
        raise LoginError(f"{what}: the answer carries no access token")
    raise LoginError(session.http.failure(what, url, response))


def poll(
    session: Session,
    attempt: Callable[[], T | None],
    *,
    interval: float,
    expires_in: float | None,
    label: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt` every `interval` seconds until it returns something other than None."""
    console = session.console
    code_limit = expires_in if expires_in and expires_in > 0 else None
    deadline = session.deadline(code_limit)
    code_expires_first = code_limit is not None and code_limit < session.options.timeout
    countdown = console.countdown(deadline, label)
    next_at = session.clock() + interval
    try:
        while True:
            if session.clock() >= next_at:
                result = None
                try:
                    result = attempt()
                except SlowDown:
                    interval += SLOW_DOWN_STEP
                    console.say(f"The server asked to poll less often: every {interval:g} s now.")
                except TransientLoginError as e:
                    console.say(f"{e}; trying again.")
                if result is not None:
                    return result
                next_at = session.clock() + interval
            if countdown.expired():
                command = f"`cliproxy auth {session.provider}`"
                if code_expires_first:
                    raise LoginTimeout(
                        f"The code expired ({clock_text(code_limit or 0)}) before the sign-in was "
                        f"approved; nothing was written. Run {command} again and approve it in time."
                    )
                raise LoginTimeout(
                    f"Timed out after {clock_text(session.options.timeout)} waiting for the sign-in "
                    f"to be approved; nothing was written. Run {command} again (--timeout SECONDS "
                    "allows longer)."
                )
            countdown.tick()
            sleep(max(0.0, min(_TICK, next_at - session.clock())))
    finally:
        countdown.finish()


def show_code(session: Session, *, page: str, user_code: str, what: str) -> None:
    """Tell the user where to go and which code to confirm there."""
    session.browse(page, what)
    if user_code:
        session.console.say(f"Confirm this code there: {user_code}")


def device_code_login(
    session: Session,
    *,
    title: str,
    device_url: str,
    token_url: str,
    headers: dict[str, str],
    start_form: dict[str, str],
    poll_form: dict[str, str],
) -> dict:
    """The whole RFC 8628 flow as Qwen and Kimi run it: ask for a device code (form post), show
    the page and the code, poll the token endpoint with `poll_form` plus the device code until
    the user approves. Returns the token answer."""
    start = session.http.json("POST", device_url, what=f"{title} device code request", data=start_form, headers=headers)
    device_code = str(start.get("device_code") or "")
    if not device_code:
        raise LoginError(f"{title} device code request: the answer carries no device code")
    page = str(start.get("verification_uri_complete") or start.get("verification_uri") or "")
    if not page:
        raise LoginError(f"{title} device code request: the answer names no page to approve the sign-in on")
    show_code(session, page=session.http.url(page), user_code=str(start.get("user_code") or ""), what="approve this sign-in")
    what = f"{title} token poll"

    def attempt() -> dict | None:
        response = session.http.request(
            "POST", token_url, what=what, headers=headers, data={**poll_form, "device_code": device_code}
        )
        return oauth_poll_result(session, token_url, what, response)

    return poll(
        session,
        attempt,
        interval=parse_interval(start.get("interval")),
        expires_in=parse_interval(start.get("expires_in"), 0) or None,
        label="Waiting for the sign-in to be approved",
    )
