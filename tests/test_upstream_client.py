"""The attempts' HTTP client against a raw loopback server: what it reads of an answer."""

from __future__ import annotations

import asyncio

import pytest

from addons.upstream_client import UpstreamClient, read_capped
from routing.config import Config


async def serve_once(head: bytes, body_parts: list[bytes]) -> tuple[asyncio.Server, str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        try:
            for part in body_parts:
                writer.write(part)
                await writer.drain()
            writer.close()
        except ConnectionError:
            pass  # the client stopped reading, as it should past its limit

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/messages"


def chunked(parts: list[bytes]) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "parts", "limit", "expected"),
    [
        # Chunked, so no length to refuse on: counted as it arrives.
        (CHUNKED_HEAD, chunked([b"a" * 600, b"b" * 600]), 1000, None),
        (CHUNKED_HEAD, chunked([b"a" * 600, b"b" * 400]), 1000, b"a" * 600 + b"b" * 400),
        # A declared length past the limit is refused before any of the body is read.
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n", [b"x" * 5000], 1000, None),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", [b"abc"], 1000, b"abc"),
    ],
)
def test_a_body_is_read_up_to_the_limit_and_no_further(head, parts, limit, expected):
    async def run() -> bytes | None:
        server, url = await serve_once(head, parts)
        client = UpstreamClient()
        try:
            response = await client.send(Config(), "POST", url, [], b"{}", None)
            try:
                return await read_capped(response, limit)
            finally:
                response.release()
        finally:
            await client.close()
            server.close()

    assert asyncio.run(run()) == expected
