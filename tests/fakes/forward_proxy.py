"""A minimal HTTP proxy on 127.0.0.1 (CONNECT tunnels and absolute-form forwarding, one request
per connection) that records which targets it carried traffic to."""

from __future__ import annotations

import asyncio
import threading


class ConnectProxy:
    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    def __enter__(self) -> ConnectProxy:
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, rest = head.split(b"\r\n", 1)
        method, target, version = request_line.decode().split(" ", 2)
        if method == "CONNECT":
            self.tunnels.append(target)
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute-form: http://host:port/path
            authority, _, path = target.removeprefix("http://").partition("/")
            self.tunnels.append(authority)
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            lines = [ln for ln in rest.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")]
            length = next((int(ln.split(b":", 1)[1]) for ln in lines if ln.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            up_writer.write(f"{method} /{path} {version}\r\n".encode() + b"\r\n".join([*lines, b"connection: close"]) + b"\r\n\r\n" + body)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
