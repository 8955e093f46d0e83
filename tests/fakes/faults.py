"""Upstream addresses that fail before HTTP starts: one that refuses, one that never accepts.

The faults that need a server to answer (reset, close, hang, die mid-stream, end early) are
scripted on the fake upstream itself (`FakeUpstream.fault`).
"""

from __future__ import annotations

import socket

from tests.conftest import free_port


def refusing_url() -> str:
    """A loopback address where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


class BlackHole:
    """A loopback address whose connections never complete.

    A listening socket with a backlog of zero that never accepts: once its one queue slot is
    taken, Linux drops every further SYN, so a client's connect waits until its own timeout, as
    with a firewall that drops packets."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # fill the accept queue (and the SYN queue's overflow allowance)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._listener.getsockname())
            self._fillers.append(filler)

    def close(self) -> None:
        for s in (*self._fillers, self._listener):
            s.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
