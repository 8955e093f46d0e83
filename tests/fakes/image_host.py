"""An image host on loopback (plain or TLS) and a tripwire listener, for the image-fetch tests.

`ImageHost` serves a 1x1 PNG at /cat.png and scripted misbehaviour: /redirect?to=URL (302),
/loop (redirects to itself), /big (more than 20 MB, with or without Content-Length), /drip (one
byte every 0.2 s, forever), /gzip (compressed), anything else 404. It records each request's path
and Host header, and the TLS server name the client sent.

`Tripwire` accepts TCP connections and counts them: the would-be target of a refused URL.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
BIG = 20 * 1024 * 1024 + 1


@dataclass
class Seen:
    path: str
    host: str


@dataclass
class _State:
    seen: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        self.state.seen.append(Seen(self.path, self.headers.get("host", "")))
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/cat.png":
            self._reply(200, PNG, "image/png")
        elif url.path == "/redirect":
            self._reply(302, b"", headers={"location": query["to"]})
        elif url.path == "/loop":
            self._reply(302, b"", headers={"location": "/loop"})
        elif url.path == "/big":
            self._big(declared=query.get("declared") == "1")
        elif url.path == "/drip":
            self._drip()
        elif url.path == "/gzip":
            self._reply(200, gzip.compress(PNG), "image/png", {"content-encoding": "gzip"})
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes, media_type: str = "text/plain", headers: dict | None = None):
        self.send_response(status)
        self.send_header("content-type", media_type)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _big(self, declared: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        if declared:
            self.send_header("content-length", str(BIG))
        else:
            self.send_header("connection", "close")
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            for _ in range(BIG // len(chunk) + 1):
                self.wfile.write(chunk)
        except OSError:
            pass  # the client gave up, as it should
        self.close_connection = True

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", "1000000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


class ImageHost:
    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        state = self.state = _State()
        handler = type("Handler", (_Handler,), {"state": state})
        self.server = http.server.ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            def remember(sock, server_name, context):
                state.server_names.append(server_name)

            tls.sni_callback = remember
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def seen(self) -> list[Seen]:
        return self.state.seen

    @property
    def server_names(self) -> list[str | None]:
        return self.state.server_names

    def __enter__(self) -> ImageHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tripwire:
    """A loopback listener that only counts the connections it is offered."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> Tripwire:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
