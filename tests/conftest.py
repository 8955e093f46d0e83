"""Shared fixtures: a real `mitmdump -s addons/cliproxy.py` subprocess and fake upstreams."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addons" / "cliproxy.py"
# A config value that leaves out one of the keys `Proxy.write_config` adds by default.
OMIT = object()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_address(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The TCP (address, port) pairs process `pid` listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):  # the process's own network namespace
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A: LISTEN
                    address, port = local.split(":")
                    found.add((_proc_address(address), int(port, 16)))
    return found


def mitmdump_executable() -> str:
    # The mitmdump of the interpreter running the tests, so that each Python gets its mitmproxy.
    candidate = Path(sys.executable).parent / "mitmdump"
    return str(candidate) if candidate.exists() else shutil.which("mitmdump") or "mitmdump"


class Proxy:
    """A running mitmdump with the cliproxy addon, its config file and its captured output."""

    def __init__(
        self,
        workdir: Path,
        config: dict,
        confdir: Path,
        extra_args: tuple[str, ...] = (),
        listen_host: str | None = "127.0.0.1",
    ):
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "mitmdump.log"
        self.port = free_port()
        self.proxy_port = free_port()
        self.confdir = confdir
        self.extra_args = extra_args
        # mitmproxy's --listen-host; None leaves it to the addon's default.
        self.listen_host = listen_host
        # cliproxy_config as given on the command line (mitmdump runs in `workdir`).
        self.config_arg = str(self.config_path)
        self.write_config(config)
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, config: dict) -> None:
        config = {"port": self.port, "host": "127.0.0.1", "auth-dir": str(self.workdir / "auth"), **config}
        config = {k: v for k, v in config.items() if v is not OMIT}
        # Write then rename, as editors do, so the watcher never sees a half-written file.
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        tmp.replace(self.config_path)

    def command(self) -> list[str]:
        return [
            mitmdump_executable(),
            "-s", str(ADDON),
            *(("--listen-host", self.listen_host) if self.listen_host is not None else ()),
            "--listen-port", str(self.proxy_port),
            "--set", f"confdir={self.confdir}",
            "--set", f"cliproxy_config={self.config_arg}",
            *self.extra_args,
        ]

    def start(self, wait: bool = True) -> Proxy:
        self.log = self.log_path.open("wb")
        # As scripts/run runs it: what ships is what is tested.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONOPTIMIZE": "1"}
        env.pop("CLI_PROXY_API_KEY", None)
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        if wait:
            self.wait_ready()
        return self

    def listening(self) -> set[tuple[str, int]]:
        assert self.process is not None
        return listening_sockets(self.process.pid)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until this mitmdump process itself listens on both its ports (another program
        answering on a port, say the user's own proxy on 8317, does not count)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.process.returncode}:\n{self.output()}")
            ports = {port for _, port in self.listening()}
            if {self.port, self.proxy_port} <= ports:
                return
            time.sleep(0.05)
        raise TimeoutError(f"mitmdump did not listen on {self.port} and {self.proxy_port}:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 10.0, start: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output()[start:]:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in mitmdump output:\n{self.output()[start:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "log", None):
            self.log.close()

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=30, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.base_url + path, timeout=30, **kw)


@pytest.fixture(scope="session")
def confdir(tmp_path_factory) -> Path:
    """One mitmproxy confdir (CA) for the whole run: generating a CA per proxy is slow."""
    return tmp_path_factory.mktemp("mitmproxy-conf")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@contextlib.contextmanager
def _proxies(tmp_path_factory, confdir) -> Iterator[Callable[..., Proxy]]:
    started: list[Proxy] = []

    def make(
        config: dict,
        *,
        start: bool = True,
        extra_args: tuple[str, ...] = (),
        listen_host: str | None = "127.0.0.1",
    ) -> Proxy:
        proxy = Proxy(tmp_path_factory.mktemp("proxy"), config, confdir, extra_args, listen_host)
        started.append(proxy)
        return proxy.start() if start else proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def make_proxy(tmp_path_factory, confdir):
    """Start a proxy with a given config; stopped at the end of the test."""
    with _proxies(tmp_path_factory, confdir) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_proxy(tmp_path_factory, confdir):
    """Like `make_proxy`, for a proxy shared by a module's tests."""
    with _proxies(tmp_path_factory, confdir) as make:
        yield make


def vendor_overrides(fake: FakeUpstream) -> dict[str, str]:
    """`upstream-overrides` sending every vendor API host to the fake."""
    return {
        host: fake.base_url
        for host in ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com")
    }
