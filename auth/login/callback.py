"""The browser half of an authorization-code login: a loopback callback server, and the wait for
the redirect, which may instead be pasted on stdin (whichever comes first wins).

Every redirect is checked against the login's `state`; one that does not match (a stale tab, a
page on some other site poking at the port) is answered 400 and ignored, and the login keeps
waiting for the right one.
"""

from __future__ import annotations

import hmac
import html
import queue
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from auth.login.console import LineReader, clock_text
from auth.login.errors import LoginError, LoginTimeout
from auth.login.pkce import PKCE, new_state

if TYPE_CHECKING:
    from auth.login.session import Session

_TICK = 0.2


@dataclass(frozen=True, slots=True)
class Redirect:
    code: str
    state: str
    params: dict[str, str]
    via: str  # "browser" or "paste"


@dataclass(frozen=True, slots=True)
class _Refused:
    error: str
    description: str


@dataclass(frozen=True, slots=True)
class _Rejected:
    reason: str
    via: str


def parse_pasted(text: str) -> dict[str, str] | None:
    """The query of a pasted redirect: a full URL, `localhost:1455/auth/callback?...`, `?code=..`,
    `code=..&state=..`, or Claude's `code#state`. None if it is none of these."""
    text = text.strip().strip("'\"<>")
    if not text:
        return None
    if "://" not in text:
        if text.startswith("?"):
            text = "http://localhost/" + text
        elif "=" in text and not any(c in text for c in "/:"):
            text = "http://localhost/?" + text
        elif "=" not in text and "#" in text:  # Claude shows the code as code#state
            code, _, state = text.partition("#")
            return {"code": code, "state": state} if code and state else None
        elif any(c in text for c in "/?:"):
            text = "http://" + text
        else:
            return None
    parts = urllib.parse.urlsplit(text)
    params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    if parts.fragment:  # implicit-style redirects put the answer in the fragment
        for key, value in urllib.parse.parse_qsl(parts.fragment, keep_blank_values=True):
            params.setdefault(key, value)
    code = params.get("code", "")
    if code and not params.get("state") and "#" in code:
        params["code"], _, params["state"] = code.partition("#")
    if not params.get("code") and not params.get("error"):
        return None
    return params


def _page(title: str, message: str) -> bytes:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:system-ui,sans-serif;margin:4em auto;max-width:36em'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    ).encode()


class CallbackServer:
    """Listens on localhost:`port` for `path`; each redirect is offered to `offer`."""

    def __init__(self, *, port: int, path: str, state: str, title: str) -> None:
        self.port = port
        self.path = path
        self.state = state
        self.title = title
        self.outcomes: queue.Queue[Redirect | _Refused | _Rejected] = queue.Queue()
        self._lock = threading.Lock()
        self._done = False
        self._servers: list[ThreadingHTTPServer] = []

    @property
    def redirect_uri(self) -> str:
        return f"http://localhost:{self.port}{self.path}"

    # -- the decision, shared by the browser and the paste --------------------------------
    def offer(self, params: dict[str, str], via: str) -> tuple[int, bytes]:
        with self._lock:
            if self._done:
                return 200, _page("Already signed in", "This sign-in has already finished. You can close this tab.")
            state = params.get("state", "")
            if not state or not hmac.compare_digest(state.encode(), self.state.encode()):
                self.outcomes.put(_Rejected("its state does not match this login (a stale or foreign link)", via))
                return 400, _page(
                    "Not this sign-in",
                    "This address does not belong to the login waiting in your terminal (state "
                    "mismatch). Start the sign-in again from the terminal.",
                )
            if params.get("error"):
                self._done = True
                self.outcomes.put(_Refused(params["error"], params.get("error_description", "")))
                return 200, _page(
                    f"{self.title} sign-in failed",
                    f"{self.title} answered: {params['error']}. Return to the terminal.",
                )
            if not params.get("code"):
                self.outcomes.put(_Rejected("it carries no authorization code", via))
                return 400, _page("No authorization code", "This address carries no authorization code.")
            self._done = True
            self.outcomes.put(Redirect(params["code"], state, params, via))
            return 200, _page(
                f"Signed in to {self.title}",
                "You can close this tab and return to the terminal.",
            )

    # -- the server ----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "cliproxy-login"
            sys_version = ""

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != owner.path:
                    self._reply(404, _page("Not found", "Nothing here."))
                    return
                params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                self._reply(*owner.offer(params, "browser"))

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request line carries the authorization code: never print it

        return Handler

    def start(self) -> None:
        handler = self._handler()
        try:
            self._servers.append(_Server(("127.0.0.1", self.port), handler))
        except OSError as e:
            raise LoginError(
                f"cannot listen on localhost:{self.port} for the {self.title} redirect "
                f"({e.strerror or e}); is another login (or the vendor's own CLI login) running? "
                "Close it and try again, or pick another port with --callback-port (some "
                "providers accept only their registered port)."
            ) from None
        self.port = self._servers[0].server_address[1]
        if socket.has_ipv6:  # browsers may resolve localhost to ::1 first
            try:
                self._servers.append(_Server6(("::1", self.port), handler))
            except OSError:
                pass
        for server in self._servers:
            threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> CallbackServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def wait_for_redirect(session: Session, server: CallbackServer) -> Redirect:
    """Wait until the browser reaches `server` or the user pastes the redirect URL; raise
    `LoginTimeout` at the deadline and `LoginError` if the provider refused."""
    console = session.console
    reader = LineReader(session.stdin) if session.stdin is not None else None
    prompt = None
    if reader is not None and (reader.tty or session.options.no_browser):
        console.say(
            "If the browser cannot reach this machine, copy the address it was sent to (even if "
            "that page did not load) and paste it here."
        )
        prompt = "Redirect address: " if reader.tty else "Or write the address the browser was sent to on stdin."
    deadline = session.deadline()
    countdown = console.countdown(deadline, f"Waiting for the {server.title} sign-in", prompt=prompt)
    try:
        while True:
            try:
                outcome = server.outcomes.get(timeout=0 if reader is not None else _TICK)
            except queue.Empty:
                outcome = None
            if isinstance(outcome, Redirect):
                return outcome
            if isinstance(outcome, _Refused):
                detail = f" ({outcome.description})" if outcome.description else ""
                raise LoginError(
                    f"{server.title} refused the sign-in: {outcome.error}{detail}. Nothing was "
                    f"written; run `cliproxy auth {session.provider}` to try again."
                )
            if isinstance(outcome, _Rejected):
                source = "a pasted address" if outcome.via == "paste" else "a browser redirect"
                console.say(f"Ignored {source}: {outcome.reason}. Still waiting.")
            if reader is not None:
                offered = False
                for line in reader.poll(_TICK):
                    countdown.line_entered()
                    if not line:
                        if console.tty:
                            countdown.draw()
                        continue
                    params = parse_pasted(line)
                    if params is None:
                        console.say("That is not a redirect address (it should contain code= and state=). Still waiting.")
                        continue
                    server.offer(params, "paste")
                    offered = True
                if offered:
                    continue  # its outcome is in the queue
            if countdown.expired():
                hint = (
                    "paste the address the browser was sent to before the time runs out"
                    if session.options.no_browser
                    else "add --no-browser and paste the address it was sent to"
                )
                raise LoginTimeout(
                    f"Timed out after {clock_text(session.options.timeout)} waiting for the "
                    f"{server.title} sign-in; nothing was written. Run `cliproxy auth "
                    f"{session.provider}` again and finish within the time limit (--timeout "
                    "SECONDS allows longer). If the browser cannot reach this machine's "
                    f"localhost:{server.port}, {hint}."
                )
            countdown.tick()
    finally:
        countdown.finish()


def browser_login(
    session: Session,
    *,
    title: str,
    port: int,
    path: str,
    authorize_url: Callable[[str, str], str],
) -> tuple[Redirect, str]:
    """The whole browser half: listen, open `authorize_url(redirect_uri, state)` (through
    `upstream-overrides`), wait. Returns the redirect and the redirect_uri the code is bound to."""
    state = new_state()
    server = CallbackServer(port=session.options.callback_port or port, path=path, state=state, title=title)
    with server:
        session.browse(session.http.url(authorize_url(server.redirect_uri, state)), f"sign in to {title}")
        return wait_for_redirect(session, server), server.redirect_uri


def pkce_browser_login(
    session: Session,
    *,
    title: str,
    port: int,
    path: str,
    authorize_url: Callable[[str, str, PKCE], str],
) -> tuple[Redirect, str, PKCE]:
    """`browser_login` for an authorization code bound to a fresh PKCE pair (Claude, Codex):
    the redirect, its redirect_uri, and the pair whose verifier the code exchange sends."""
    pkce = PKCE.new()
    redirect, redirect_uri = browser_login(
        session, title=title, port=port, path=path, authorize_url=lambda uri, state: authorize_url(uri, state, pkce)
    )
    return redirect, redirect_uri, pkce
