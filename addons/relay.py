"""The loopback server through which mitmproxy reaches the pool's upstreams.

mitmproxy streams a response body only from a server connection, and once its own connection
attempt has failed it answers the client itself. So a flow the pool serves is sent here
instead: the relay makes the attempts (the dispatcher's `answer`), fails over between
credentials before the client has seen a byte, and hands back the chosen upstream's answer,
whose chunks mitmproxy then streams to the client as they arrive.

mitmproxy sends only the request head, naming the flow in `x-cliproxy-flow`; the body the
upstream gets is the one the dispatcher prepared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import h11

logger = logging.getLogger("cliproxy")

FLOW_HEADER = "x-cliproxy-flow"
_FLOW_HEADER = FLOW_HEADER.encode()
_READ_SIZE = 65536


@dataclass(slots=True)
class Answer:
    """What the relay sends back for one flow: a whole body, or chunks as they come."""

    status: int
    headers: list[tuple[bytes, bytes]]
    reason: bytes = b""
    body: bytes = b""
    chunks: AsyncIterator[bytes] | None = None


Responder = Callable[[str], Awaitable[Answer]]


class Relay:
    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._serve_one(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            pass  # mitmproxy closed the connection (its client left), or the proxy is stopping
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        request = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ_SIZE)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return False
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return False
        assert request is not None
        flow_id = next((v.decode() for k, v in request.headers if k == _FLOW_HEADER), "")
        answer = await self._respond(flow_id)
        await self._send(conn, writer, answer)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, answer: Answer) -> None:
        chunks = answer.chunks
        headers = answer.headers
        if chunks is None:
            headers = [*headers, (b"content-length", b"%d" % len(answer.body))]
        else:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        writer.write(conn.send(h11.Response(status_code=answer.status, headers=headers, reason=answer.reason)))
        if chunks is None:
            if answer.body:
                writer.write(conn.send(h11.Data(data=answer.body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            return
        try:
            async for chunk in chunks:
                if chunk:
                    # The chunked framing, written here: it runs once per upstream chunk.
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
        finally:
            # Ends the upstream request too when mitmproxy went away mid-stream.
            await chunks.aclose()  # type: ignore[attr-defined]
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
