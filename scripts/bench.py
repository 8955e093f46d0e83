"""Benchmark: what the proxy costs, next to the floor, plain mitmdump and LiteLLM.

Run it as `scripts/bench` (see `--help`). One run, on one machine and one fake upstream
(tests/fakes/upstream.py, in its own process, with a fixed latency), measures:

  1. direct to the fake (the floor);
  2. plain `mitmdump --mode reverse:` with no addon (mitmproxy's own cost);
  3. cliproxy, same-format pass-through;
  4. cliproxy, translated (an OpenAI client on a claude-api-key model, an Anthropic client on an
     openai-compatibility model), "n/a (translation not built)" while the proxy refuses it;
  5. the LiteLLM proxy, in a throwaway virtual environment under ~/.cache/cliproxy-bench.

Figures (median and p99): added latency of a small non-streaming request, added time to the
first byte of a stream, total time of a 500-event stream, requests per second at 16 and 64
concurrent clients, peak RSS of the proxy with 200 open streams. They are printed as one table
(with each row's ratio to the direct connection and to plain mitmdump) and written as JSON.

The load client is this process (raw asyncio HTTP/1.1 on keep-alive connections, the same for
every target); the fakes and every proxy run in processes of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addons" / "cliproxy.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cliproxy-bench"
OVERHEAD_HEADER = b"x-cliproxy-overhead-ms"
PAGE = os.sysconf("SC_PAGE_SIZE")

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-sonnet-4-5"
SLOW = "-slow"  # suffix of the model names routed to the slow fake (the open-streams phase)
PROMPT = "Say hello in one short sentence."

OPENAI, ANTHROPIC = "openai-chat", "anthropic"
CLIENT_TITLES = {OPENAI: "OpenAI client", ANTHROPIC: "Anthropic client"}


# ---------------------------------------------------------------------------- settings


@dataclass
class Settings:
    latency_ms: float = 20.0
    requests: int = 300  # sequential non-stream requests per row
    streams: int = 100  # sequential long streams per row
    events: int = 500  # text deltas of the long stream
    rps_seconds: float = 2.0  # measured window of each throughput phase
    rps_warm: float = 0.4  # discarded ramp before it
    concurrency: tuple[int, ...] = (16, 64)
    open_streams: int = 200
    slow_events: int = 40  # the open streams: slow_events deltas, slow_delay apart
    slow_delay: float = 0.1
    warmup: int = 40  # non-stream requests before measuring a row

    @property
    def open_seconds(self) -> float:
        return self.slow_events * self.slow_delay


QUICK = dict(requests=80, streams=20, rps_seconds=0.8, rps_warm=0.2, slow_events=20, warmup=15)


# ---------------------------------------------------------------------------- progress


class Progress:
    """One status line on stderr: rewritten in place on a terminal, a line per step elsewhere."""

    def __init__(self, total: int) -> None:
        self.tty = sys.stderr.isatty()
        self.total = total
        self.index = 0
        self.prefix = "[setup]"
        self._last = 0.0
        self._shown = ""

    def phase(self, label: str) -> None:
        self.index += 1
        self.prefix = f"[{self.index}/{self.total}] {label}"

    def status(self, text: str, *, force: bool = False) -> None:
        line = f"{self.prefix}: {text}"
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last < 0.1:
                return
            self._last = now
            width = shutil.get_terminal_size((120, 24)).columns
            sys.stderr.write("\r\033[K" + line[: width - 1])
            sys.stderr.flush()
            self._shown = line
        elif force:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def done(self, text: str) -> None:
        self.status(text, force=True)
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = ""

    def note(self, text: str) -> None:
        if self.tty and self._shown:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"{self.prefix if self.prefix == '[setup]' else '       '} {text}\n")
        sys.stderr.flush()
        if self.tty and self._shown:
            sys.stderr.write(self._shown)
            sys.stderr.flush()


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A process this run started (in its own session), with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGINT) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log
        self.stop_signal = stop_signal
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            try:
                os.kill(self.proc.pid, self.stop_signal)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.alive() or _group_alive(self.proc.pid):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._log.close()
        if self in RUNNING:
            RUNNING.remove(self)


RUNNING: list[Service] = []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_all() -> None:
    for service in list(reversed(RUNNING)):
        service.stop()


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (LiteLLM may run workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def hwm_bytes(pids: Sequence[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


def wait_port(service: Service, port: int, timeout: float, progress: Progress, what: str) -> None:
    started = time.monotonic()
    while True:
        if not service.alive():
            raise SetupError(f"{service.name} exited with {service.proc.returncode}:\n{service.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            pass
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise SetupError(f"{service.name} did not listen on {port} within {timeout:.0f} s:\n{service.output()}")
        progress.status(f"{what} ({elapsed:.0f} s)")
        time.sleep(0.05)


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64)
    return int(head[9:12]) if head.startswith(b"HTTP/") else 0


class SetupError(RuntimeError):
    pass


def start_fake(python: str, workdir: Path, name: str, latency: float, events: int, event_delay: float) -> tuple[Service, str]:
    log = workdir / f"{name}.log"
    service = Service(
        name,
        [python, "-m", "tests.fakes.upstream", "--latency", str(latency), "--events", str(events),
         "--event-delay", str(event_delay)],
        log,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stop_signal=signal.SIGTERM,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = service.output()
        if m := re.search(r"^(http://127\.0\.0\.1:\d+)$", text, re.M):
            return service, m.group(1)
        if not service.alive():
            break
        time.sleep(0.05)
    raise SetupError(f"the fake upstream did not start:\n{service.output()}")


# ---------------------------------------------------------------------------- HTTP client


class Conn:
    """One keep-alive HTTP/1.1 connection; requests are pre-encoded bytes."""

    __slots__ = ("port", "reader", "writer")

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, data: bytes, *, keep_body: bool = False, on_first: Callable[[], None] | None = None
    ) -> tuple[int, float, float, float, float | None, bytes]:
        """Send; returns (status, sent at, first body byte at, done at, overhead header, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        reader = self.reader
        assert reader is not None
        try:
            t0 = time.perf_counter()
            self.writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length: int | None = None
            chunked = close = False
            overhead: float | None = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
                elif name == OVERHEAD_HEADER:
                    try:
                        overhead = float(value)
                    except ValueError:
                        pass
            first = 0.0
            parts: list[bytes] = []
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass
                        break
                    chunk = await reader.readexactly(size + 2)
                    if not first:
                        first = time.perf_counter()
                        if on_first:
                            on_first()
                    if keep_body:
                        parts.append(chunk[:-2])
            elif length is not None:
                left = length
                while left > 0:
                    chunk = await reader.read(left)
                    if not chunk:
                        raise ConnectionError("connection closed mid-body")
                    if not first:
                        first = time.perf_counter()
                        if on_first:
                            on_first()
                    left -= len(chunk)
                    if keep_body:
                        parts.append(chunk)
            else:
                close = True
                while chunk := await reader.read(65536):
                    if not first:
                        first = time.perf_counter()
                        if on_first:
                            on_first()
                    if keep_body:
                        parts.append(chunk)
            done = time.perf_counter()
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, t0, first or done, done, overhead, b"".join(parts)


@dataclass
class Target:
    """One row of the table: who is measured, speaking which format to which upstream."""

    key: str
    system: str  # direct | mitmdump | cliproxy | litellm
    client: str  # the client's format
    upstream: str  # the upstream's format
    measure_rss: bool = False
    port: int = 0
    slow_port: int = 0
    model: str = ""
    slow_model: str = ""
    pids: Callable[[], list[int]] | None = None
    status: str = "ok"
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def translated(self) -> bool:
        return self.client != self.upstream

    @property
    def label(self) -> str:
        if self.system == "direct":
            return f"direct · {self.client}"
        if self.system == "mitmdump":
            return f"mitmdump · {self.client}"
        how = f"{self.client} → {self.upstream}" if self.translated else self.client
        return f"{self.system} · {how}"

    def request(self, *, stream: bool, slow: bool = False) -> bytes:
        port = self.slow_port if slow else self.port
        model = self.slow_model if slow else self.model
        if self.client == OPENAI:
            path = "/v1/chat/completions"
            body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
            headers = "Authorization: Bearer sk-bench-client\r\n"
        else:
            path = "/v1/messages"
            body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
            headers = "x-api-key: sk-bench-client\r\nanthropic-version: 2023-06-01\r\n"
        if stream:
            body["stream"] = True
        data = json.dumps(body).encode()
        accept = "text/event-stream" if stream else "application/json"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: cliproxy-bench\r\n"
            f"Accept: {accept}\r\nContent-Type: application/json\r\n{headers}Content-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data


# ---------------------------------------------------------------------------- statistics


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def summary(ms: Sequence[float], errors: int, hooks: Sequence[float] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(ms), "errors": errors, "median_ms": median(ms), "p99_ms": pct(ms, 0.99)}
    if hooks:
        out["hooks_median_ms"] = median(hooks)
        out["hooks_p99_ms"] = pct(hooks, 0.99)
    return out


def count_events(body: bytes) -> int:
    return len(re.findall(rb"(?m)^data:", body))


# ---------------------------------------------------------------------------- measuring one row


class Runner:
    def __init__(self, settings: Settings, progress: Progress) -> None:
        self.s = settings
        self.progress = progress

    async def row(self, t: Target) -> None:
        s, p = self.s, self.progress
        nonstream, stream = t.request(stream=False), t.request(stream=True)
        # Probe: does this target serve the case at all?
        p.status("probe", force=True)
        conn = Conn(t.port)
        try:
            status, *_, body = await conn.request(nonstream, keep_body=True)
            if status < 300:
                status, *_, body = await conn.request(stream, keep_body=True)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            t.status = f"n/a (request failed: {type(e).__name__})"
            p.done(t.status)
            return
        if status >= 300:
            text = body.decode(errors="replace")
            if "not built" in text and "translat" in text:
                t.status = "n/a (translation not built)"
            else:
                t.status = f"n/a (HTTP {status}: {' '.join(text.split())[:100]})"
            conn.close()
            p.done(t.status)
            return
        events = count_events(body)
        t.results["probe"] = {"stream_events_seen": events, "stream_bytes": len(body)}
        if events < s.events:
            p.note(f"{t.label}: the probe stream had {events} events for {s.events} deltas")

        # Warm-up: the connection, the proxy's code paths and its connection pools.
        for i in range(s.warmup):
            await conn.request(nonstream)
            p.status(f"warm-up {i + 1}/{s.warmup}")
        for _ in range(3):
            await conn.request(stream)
        conn.close()
        await self.throughput(t, nonstream, 16, 0.3, 0.0, "warm-up")

        if t.measure_rss and t.pids is not None:
            t.results["rss"] = await self.open_streams(t)

        t.results["nonstream"] = await self.sequential(t, nonstream, s.requests, "non-stream", ttfb=False)
        ttfb, total = await self.sequential(t, stream, s.streams, f"{s.events}-event stream", ttfb=True)
        t.results["ttfb"], t.results["stream"] = ttfb, total
        for c in s.concurrency:
            t.results[f"rps{c}"] = await self.throughput(t, nonstream, c, s.rps_seconds, s.rps_warm, f"{c} clients")
        parts = [f"non-stream median {fmt_ms(t.results['nonstream']['median_ms'])}",
                 f"stream {fmt_ms(total['median_ms'])}"]
        parts += [f"{t.results[f'rps{c}']['rps']:.0f} rps @{c}" for c in s.concurrency]
        if "rss" in t.results:
            parts.append(f"peak RSS {t.results['rss']['peak_mb']:.0f} MB")
        p.done(", ".join(parts))

    async def sequential(self, t: Target, data: bytes, n: int, what: str, *, ttfb: bool):
        p = self.progress
        conn = Conn(t.port)
        lat: list[float] = []
        first: list[float] = []
        hooks: list[float] = []
        errors = 0
        p.status(f"{what} 0/{n}", force=True)
        for i in range(n):
            try:
                status, t0, t_first, t_done, overhead, _ = await conn.request(data)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                continue
            if status >= 300:
                errors += 1
                continue
            lat.append((t_done - t0) * 1000)
            first.append((t_first - t0) * 1000)
            if overhead is not None:
                hooks.append(overhead)
            p.status(f"{what} {i + 1}/{n}")
        conn.close()
        if ttfb:
            return summary(first, errors, hooks), summary(lat, errors, hooks)
        return summary(lat, errors, hooks)

    async def throughput(self, t: Target, data: bytes, clients: int, seconds: float, warm: float, what: str):
        p = self.progress
        start = time.perf_counter()
        measure_from = start + warm
        end = measure_from + seconds
        lat: list[float] = []
        errors = 0
        done = 0

        async def client() -> None:
            nonlocal errors, done
            conn = Conn(t.port)
            while time.perf_counter() < end:
                try:
                    status, t0, _, t_done, _, _ = await conn.request(data)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue
                if status >= 300:
                    errors += 1
                elif measure_from <= t_done <= end:
                    lat.append((t_done - t0) * 1000)
                done += 1
            conn.close()

        async def show() -> None:
            while True:
                elapsed = time.perf_counter() - start
                p.status(f"{what}: {min(elapsed, warm + seconds):.1f}/{warm + seconds:.1f} s, {done} requests")
                await asyncio.sleep(0.1)

        p.status(f"{what}: 0.0/{warm + seconds:.1f} s", force=True)
        ticker = asyncio.create_task(show())
        try:
            await asyncio.gather(*(client() for _ in range(clients)))
        finally:
            ticker.cancel()
        out = summary(lat, errors)
        out["clients"] = clients
        out["seconds"] = seconds
        out["rps"] = len(lat) / seconds if seconds else 0.0
        return out

    async def open_streams(self, t: Target) -> dict[str, Any]:
        """Hold `open_streams` slow streams open at once; sample the proxy's RSS meanwhile."""
        s, p = self.s, self.progress
        assert t.pids is not None
        data = t.request(stream=True, slow=True)
        pids = t.pids()
        idle = rss_bytes(pids)
        peak = idle
        open_now = max_open = completed = errors = 0
        ramp = 0.5  # spread the connects, so that no listen backlog overflows
        events_seen: list[int] = []

        def opened() -> None:
            nonlocal open_now, max_open
            open_now += 1
            max_open = max(max_open, open_now)

        async def one(i: int) -> None:
            nonlocal open_now, completed, errors
            await asyncio.sleep(ramp * i / s.open_streams)
            conn = Conn(t.slow_port)
            got_first = False

            def first() -> None:
                nonlocal got_first
                got_first = True
                opened()

            try:
                status, *_, body = await conn.request(data, keep_body=True, on_first=first)
                if status >= 300:
                    errors += 1
                else:
                    completed += 1
                    events_seen.append(count_events(body))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
            finally:
                if got_first:
                    open_now -= 1
                conn.close()

        async def sample() -> None:
            nonlocal peak, pids
            last_scan = time.monotonic()
            while True:
                if time.monotonic() - last_scan > 1:
                    pids, last_scan = t.pids(), time.monotonic()  # type: ignore[misc]
                peak = max(peak, rss_bytes(pids))
                p.status(
                    f"{s.open_streams} open streams: {open_now} open, {completed} done, "
                    f"RSS {peak / 2**20:.0f} MB peak"
                )
                await asyncio.sleep(0.05)

        p.status(f"{s.open_streams} open streams: opening", force=True)
        sampler = asyncio.create_task(sample())
        try:
            await asyncio.gather(*(one(i) for i in range(s.open_streams)))
        finally:
            sampler.cancel()
        peak = max(peak, rss_bytes(pids))
        return {
            "streams": s.open_streams,
            "seconds_each": s.open_seconds,
            "max_open_at_once": max_open,
            "completed": completed,
            "errors": errors,
            "median_events_seen": median(events_seen),
            "idle_mb": idle / 2**20,
            "peak_mb": peak / 2**20,
            "hwm_mb": hwm_bytes(pids) / 2**20,
        }


# ---------------------------------------------------------------------------- the systems under test


def mitmdump_path(python: str | None) -> Path:
    if python is None:
        return ROOT / ".venv" / "bin" / "mitmdump"
    p = Path(python)
    if p.name.startswith("mitmdump"):
        return p
    return p.parent / "mitmdump"


def common_mitm_options(confdir: Path) -> list[str]:
    # Equal for plain mitmdump and cliproxy: no per-flow console output, the same CA folder.
    return [
        "--set", f"confdir={confdir}",
        "--set", "termlog_verbosity=warn",
        "--set", "flow_detail=0",
    ]


def plain_mitmdump_cmd(mitmdump: Path, confdir: Path, fast: str, slow: str, port: int, slow_port: int) -> list[str]:
    return [
        str(mitmdump),
        "--mode", f"reverse:{fast}@{port}",
        "--mode", f"reverse:{slow}@{slow_port}",
        "--listen-host", "127.0.0.1",
        *common_mitm_options(confdir),
        # What cliproxy does for itself: dial the upstream on the first request, not on connect,
        # and relay response bodies as they arrive (without an addon, mitmproxy buffers them;
        # a stream would reach the client only once complete).
        "--set", "connection_strategy=lazy",
        "--set", "stream_large_bodies=1",
    ]


def cliproxy_config(port: int, workdir: Path, fast: str, slow: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "auth-dir": str(workdir / "auth"),
        "claude-api-key": [
            {"api-key": "sk-ant-bench-fast-000000", "base-url": fast, "models": [{"name": CLAUDE_MODEL}]},
            {"api-key": "sk-ant-bench-slow-000000", "base-url": slow, "models": [{"name": CLAUDE_MODEL + SLOW}]},
        ],
        "gemini-api-key": [{"api-key": "bench-gemini-key-000000"}],
        "openai-compatibility": [
            {
                "name": "fake",
                "base-url": f"{fast}/v1",
                "api-key-entries": [{"api-key": "sk-bench-fast-0000000000"}],
                "models": [{"name": OPENAI_MODEL}],
            },
            {
                "name": "fake-slow",
                "base-url": f"{slow}/v1",
                "api-key-entries": [{"api-key": "sk-bench-slow-0000000000"}],
                "models": [{"name": OPENAI_MODEL + SLOW}],
            },
        ],
        # Vendor hosts not named by a base-url (the gemini entry) go to the fake as well.
        "upstream-overrides": {
            host: fast for host in ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com")
        },
    }


def cliproxy_cmd(mitmdump: Path, confdir: Path, config: Path) -> list[str]:
    return [
        str(mitmdump),
        "-s", str(ADDON),
        "--listen-host", "127.0.0.1",
        "--listen-port", str(free_port()),
        *common_mitm_options(confdir),
        "--set", f"cliproxy_config={config}",
    ]


def litellm_config(fast: str, slow: str) -> str:
    entries = []
    for suffix, base in (("", fast), (SLOW, slow)):
        entries.append(
            {"model_name": OPENAI_MODEL + suffix,
             "litellm_params": {"model": f"openai/{OPENAI_MODEL}", "api_base": f"{base}/v1", "api_key": "sk-bench-0000"}}
        )
        entries.append(
            {"model_name": CLAUDE_MODEL + suffix,
             "litellm_params": {"model": f"anthropic/{CLAUDE_MODEL}", "api_base": base, "api_key": "sk-ant-bench-0000"}}
        )
    return json.dumps({"model_list": entries, "litellm_settings": {"telemetry": False, "drop_params": True}}, indent=2)


def litellm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "ANTHROPIC_"))}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at start-up
            "LITELLM_LOG": "ERROR",  # like termlog_verbosity=warn: no per-request log lines
            "LITELLM_TELEMETRY": "False",
            # Newer releases refuse to start without a master key; the other targets check none either.
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def ensure_litellm(venv: Path, progress: Progress) -> tuple[Path | None, str]:
    """The LiteLLM venv's python (installing it on first use), or None and why not."""
    python = venv / "bin" / "python"
    marker = venv / ".cliproxy-bench-installed"
    if marker.exists() and python.exists():
        return python, marker.read_text().strip()
    if venv.exists():
        shutil.rmtree(venv)  # an interrupted install
    venv.parent.mkdir(parents=True, exist_ok=True)
    log_path = venv.parent / "litellm-install.log"
    base = getattr(sys, "_base_executable", None) or sys.executable
    progress.note(f"installing litellm[proxy] into {venv} (first run only; log in {log_path})")
    started = time.monotonic()
    with log_path.open("wb") as log:
        r = subprocess.run([base, "-m", "venv", str(venv)], stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"could not create a virtual environment with {base} (see {log_path})"
        proc = subprocess.Popen(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--timeout", "30", "--retries", "2",
             "litellm[proxy]"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        next_line = 15.0
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                progress.status(f"installing litellm[proxy]: {elapsed:.0f} s")
                if not progress.tty and elapsed >= next_line:
                    progress.status(f"installing litellm[proxy]: {elapsed:.0f} s", force=True)
                    next_line += 15
                time.sleep(0.25)
        except BaseException:
            proc.kill()
            shutil.rmtree(venv, ignore_errors=True)
            raise
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("WARNING: Location")]
        why = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
        return None, f"pip install 'litellm[proxy]' failed after {elapsed:.0f} s: {why[:200]} (log: {log_path})"
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True,
    ).stdout.strip() or "?"
    marker.write_text(version + "\n")
    progress.done(f"installed litellm {version} in {elapsed:.0f} s")
    return python, version


# ---------------------------------------------------------------------------- report


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f} ms"
    if abs(v) >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def fmt_ratio(v: float | None) -> str:
    if v is None or math.isnan(v) or math.isinf(v):
        return "—"
    return f"{v:.2f}x"


METRICS = (
    ("nonstream", "time", "small non-streaming request, 1 client: latency"),
    ("ttfb", "time", "stream, 1 client: time to first byte of the body (first event)"),
    ("stream", "time", "{events}-event stream, 1 client: total time"),
    ("rps16", "rate", "16 concurrent clients, non-streaming: requests/s (p99 column: latency under that load)"),
    ("rps64", "rate", "64 concurrent clients, non-streaming: requests/s (p99 column: latency under that load)"),
    ("rss", "mem", "{streams} open streams ({seconds:.0f} s each): peak RSS of the proxy process tree (added: over idle)"),
)


def derive(targets: list[Target]) -> None:
    """Added time over the direct connection, and ratios to direct and plain mitmdump."""
    by_key = {t.key: t for t in targets}
    for t in targets:
        direct = by_key.get(f"direct.{t.client}")
        mitm = by_key.get(f"mitmdump.{t.client}")
        for metric, kind, _ in METRICS:
            r = t.results.get(metric)
            if not r:
                continue
            d = direct.results.get(metric) if direct and direct.status == "ok" else None
            m = mitm.results.get(metric) if mitm and mitm.status == "ok" else None
            if kind == "time":
                if d and r["median_ms"] is not None and d["median_ms"] is not None:
                    r["added_median_ms"] = r["median_ms"] - d["median_ms"]
                    r["added_p99_ms"] = r["p99_ms"] - d["p99_ms"]
                    r["x_direct"] = r["median_ms"] / d["median_ms"]
                if m and m["median_ms"]:
                    r["x_mitmdump"] = r["median_ms"] / m["median_ms"]
                    if "added_median_ms" in r and m.get("added_median_ms"):
                        r["added_x_mitmdump"] = r["added_median_ms"] / m["added_median_ms"]
            elif kind == "rate":
                if d and d["rps"]:
                    r["x_direct"] = r["rps"] / d["rps"]
                if m and m["rps"]:
                    r["x_mitmdump"] = r["rps"] / m["rps"]
            elif kind == "mem":
                r["added_mb"] = r["peak_mb"] - r["idle_mb"]
                if m and m["peak_mb"]:
                    r["x_mitmdump"] = r["peak_mb"] / m["peak_mb"]


def table(targets: list[Target], s: Settings) -> str:
    cols = ("target", "median", "p99", "added", "×direct", "×mitmdump", "added×mitm", "hooks")
    widths = (34, 10, 10, 11, 8, 10, 11, 9)
    lines = []

    def row(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return (first + "".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:]))).rstrip()

    lines.append(row(cols))
    lines.append("─" * sum(widths))
    for metric, kind, title in METRICS:
        title = title.format(events=s.events, streams=s.open_streams, seconds=s.open_seconds)
        shown = [t for t in targets if metric in t.results or (t.status != "ok" and metric != "rss")]
        if metric == "rss":
            shown = [t for t in targets if "rss" in t.results or (t.status != "ok" and t.measure_rss)]
        if not shown:
            continue
        lines.append(title)
        for t in shown:
            name = "  " + t.label
            if t.status != "ok":
                lines.append(row((name, t.status)) if len(t.status) < 10 else f"{name:<{widths[0]}}  {t.status}")
                continue
            r = t.results[metric]
            if kind == "time":
                added = r.get("added_median_ms")
                cells = (
                    name, fmt_ms(r["median_ms"]), fmt_ms(r["p99_ms"]),
                    ("+" + fmt_ms(added)) if added is not None and t.system != "direct" else "—",
                    fmt_ratio(r.get("x_direct")), fmt_ratio(r.get("x_mitmdump")),
                    fmt_ratio(r.get("added_x_mitmdump")) if t.system not in ("direct", "mitmdump") else "—",
                    fmt_ms(r.get("hooks_median_ms")) if "hooks_median_ms" in r else "—",
                )
            elif kind == "rate":
                cells = (
                    name, f"{r['rps']:.0f}/s", fmt_ms(r["p99_ms"]), "—",
                    fmt_ratio(r.get("x_direct")), fmt_ratio(r.get("x_mitmdump")), "—", "—",
                )
            else:
                cells = (
                    name, f"{r['peak_mb']:.0f} MB", "—", f"+{r['added_mb']:.0f} MB", "—",
                    fmt_ratio(r.get("x_mitmdump")), "—", "—",
                )
            if r.get("errors"):
                cells = (*cells[:-1], cells[-1] + f"  ({r['errors']} errors)")
            if kind == "mem" and r["max_open_at_once"] < r["streams"]:
                cells = (*cells[:-1], cells[-1] + f"  (only {r['max_open_at_once']} open at once)")
            lines.append(row(cells))
    return "\n".join(lines)


def check_targets(targets: list[Target]) -> list[dict[str, Any]]:
    """The issue's targets, each as measured (or n/a)."""
    by_key = {t.key: t for t in targets}
    out: list[dict[str, Any]] = []

    def get(key: str, metric: str) -> dict[str, Any] | None:
        t = by_key.get(key)
        return t.results.get(metric) if t and t.status == "ok" else None

    def reason(key: str) -> str:
        t = by_key.get(key)
        return t.status if t else "n/a (not measured)"

    for client in (OPENAI, ANTHROPIC):
        goal = f"pass-through added median latency ≤ 1.3x plain mitmdump's ({client})"
        r, m = get(f"cliproxy.{client}", "nonstream"), get(f"mitmdump.{client}", "nonstream")
        if r and m and "added_median_ms" in r and m.get("added_median_ms"):
            ratio = r["added_median_ms"] / m["added_median_ms"]
            out.append({"target": goal, "value": ratio, "limit": 1.3, "pass": ratio <= 1.3,
                        "detail": f"+{fmt_ms(r['added_median_ms'])} vs +{fmt_ms(m['added_median_ms'])} → {ratio:.2f}x"})
        else:
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(f"cliproxy.{client}")})
    for client, upstream in ((OPENAI, ANTHROPIC), (ANTHROPIC, OPENAI)):
        key = f"cliproxy.{client}>{upstream}"
        goal = f"translated {client} → {upstream} stream total time within 1.5x of plain mitmdump's ({client})"
        r, m = get(key, "stream"), get(f"mitmdump.{client}", "stream")
        if r and m:
            ratio = r["median_ms"] / m["median_ms"]
            out.append({"target": goal, "value": ratio, "limit": 1.5, "pass": ratio <= 1.5,
                        "detail": f"{fmt_ms(r['median_ms'])} vs {fmt_ms(m['median_ms'])} → {ratio:.2f}x"})
        else:
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(key)})
    for suffix, what in ((OPENAI, OPENAI), (ANTHROPIC, ANTHROPIC), (f"{OPENAI}>{ANTHROPIC}", f"{OPENAI} → {ANTHROPIC}"),
                         (f"{ANTHROPIC}>{OPENAI}", f"{ANTHROPIC} → {OPENAI}")):
        goal = f"≥5x less added median latency than LiteLLM ({what})"
        r, l = get(f"cliproxy.{suffix}", "nonstream"), get(f"litellm.{suffix}", "nonstream")
        if r and l and r.get("added_median_ms") is not None and l.get("added_median_ms") is not None:
            ours = max(r["added_median_ms"], 1e-3)
            ratio = l["added_median_ms"] / ours
            out.append({"target": goal, "value": ratio, "limit": 5.0, "pass": ratio >= 5,
                        "detail": f"LiteLLM +{fmt_ms(l['added_median_ms'])} vs +{fmt_ms(r['added_median_ms'])} → {ratio:.1f}x less"})
        else:
            missing = f"cliproxy.{suffix}" if not r else f"litellm.{suffix}"
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(missing)})
    for t in targets:
        if t.system == "cliproxy" and t.measure_rss:
            goal = f"open streams under 300 MB RSS ({t.label})"
            r = t.results.get("rss") if t.status == "ok" else None
            if r:
                out.append({"target": goal, "value": r["peak_mb"], "limit": 300, "pass": r["peak_mb"] < 300
                            and r["max_open_at_once"] >= r["streams"],
                            "detail": f"{r['peak_mb']:.0f} MB peak with {r['max_open_at_once']} open at once"})
            else:
                out.append({"target": goal, "value": None, "pass": None, "detail": t.status})
    return out


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure cliproxy against a direct connection, plain mitmdump and LiteLLM on a local fake upstream.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests and shorter phases (about a minute)")
    parser.add_argument("--requests", type=int, metavar="N",
                        help="sequential non-stream requests per row (default 300, quick 80); streams are a third of it")
    parser.add_argument("--latency", type=float, metavar="MS", default=20.0,
                        help="the fake upstream's fixed latency before every reply, in ms (default 20)")
    parser.add_argument("--events", type=int, default=500, help="text deltas in the long stream (default 500)")
    parser.add_argument("--json", metavar="PATH", help="where to write the results (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--python", metavar="PATH",
                        help="the Python (or mitmdump) whose mitmdump to measure (default: .venv's), e.g. .venv312/bin/python")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (its rows are n/a)")
    parser.add_argument("--litellm-venv", metavar="DIR", default=str(CACHE / "litellm-venv"),
                        help="LiteLLM's throwaway virtual environment, created on first use (default %(default)s)")
    parser.add_argument("--only", metavar="SYSTEMS",
                        help="comma-separated subset of direct,mitmdump,cliproxy,litellm (direct and mitmdump are "
                             "the baselines of the ratios)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs and process logs)")
    return parser.parse_args(argv)


def build_targets(systems: set[str]) -> list[Target]:
    targets = []
    for system in ("direct", "mitmdump", "cliproxy", "litellm"):
        if system not in systems:
            continue
        for client in (OPENAI, ANTHROPIC):
            targets.append(Target(f"{system}.{client}", system, client, client, measure_rss=system != "direct" and client == OPENAI))
        if system in ("cliproxy", "litellm"):
            targets.append(Target(f"{system}.{OPENAI}>{ANTHROPIC}", system, OPENAI, ANTHROPIC, measure_rss=True))
            targets.append(Target(f"{system}.{ANTHROPIC}>{OPENAI}", system, ANTHROPIC, OPENAI))
    for t in targets:
        upstream_model = OPENAI_MODEL if t.upstream == OPENAI else CLAUDE_MODEL
        t.model = upstream_model
        t.slow_model = upstream_model + (SLOW if t.system in ("cliproxy", "litellm") else "")
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings(latency_ms=args.latency, events=args.events)
    if args.quick:
        for k, v in QUICK.items():
            setattr(s, k, v)
    if args.requests:
        s.requests = args.requests
        s.streams = max(5, args.requests // 3)
    systems = {"direct", "mitmdump", "cliproxy", "litellm"}
    if args.only:
        systems = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = systems - {"direct", "mitmdump", "cliproxy", "litellm"}
        if unknown:
            print(f"scripts/bench: --only: unknown {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    mitmdump = mitmdump_path(args.python)
    if not mitmdump.exists():
        print(f"scripts/bench: no mitmdump at {mitmdump}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else ROOT / "bench-results" / f"bench-{stamp}.json"

    targets = build_targets(systems)
    progress = Progress(len(targets))
    workdir = Path(tempfile.mkdtemp(prefix="cliproxy-bench-"))
    started = time.monotonic()
    notes: list[str] = []
    versions: dict[str, str] = {}

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        versions["mitmproxy"] = subprocess.run(
            [str(mitmdump), "--version"], capture_output=True, text=True
        ).stdout.split("\n")[0].replace("Mitmproxy:", "").strip()
        litellm_python: Path | None = None
        litellm_reason = ""
        if "litellm" in systems:
            if args.no_litellm:
                litellm_reason = "n/a (--no-litellm)"
            else:
                litellm_python, why = ensure_litellm(Path(args.litellm_venv).expanduser(), progress)
                if litellm_python is None:
                    litellm_reason = f"n/a (LiteLLM not installed: {why})"
                    progress.note(f"LiteLLM rows are n/a: {why}")
                else:
                    versions["litellm"] = why
        progress.status("starting the fake upstreams", force=True)
        fast_svc, fast = start_fake(sys.executable, workdir, "fake", s.latency_ms / 1000, s.events, 0.0)
        slow_svc, slow = start_fake(
            sys.executable, workdir, "fake-slow", s.latency_ms / 1000, s.slow_events, s.slow_delay
        )
        fast_port, slow_port = int(fast.rsplit(":", 1)[1]), int(slow.rsplit(":", 1)[1])
        confdir = workdir / "mitmproxy-conf"
        confdir.mkdir()
        progress.note(
            f"fake upstream {fast} ({s.latency_ms:g} ms latency, {s.events}-event streams) and {slow} "
            f"({s.slow_events} events {s.slow_delay * 1000:g} ms apart), pids {fast_svc.pid} {slow_svc.pid}"
        )
        runner = Runner(s, progress)

        for system in ("direct", "mitmdump", "cliproxy", "litellm"):
            rows = [t for t in targets if t.system == system]
            if not rows:
                continue
            service: Service | None = None
            port = slow_listen = 0
            try:
                if system == "direct":
                    port, slow_listen = fast_port, slow_port
                elif system == "mitmdump":
                    port, slow_listen = free_port(), free_port()
                    cmd = plain_mitmdump_cmd(mitmdump, confdir, fast, slow, port, slow_listen)
                    service = Service("plain mitmdump", cmd, workdir / "mitmdump.log", cwd=workdir)
                    wait_port(service, port, 60, progress, "starting plain mitmdump")
                    wait_port(service, slow_listen, 10, progress, "starting plain mitmdump")
                elif system == "cliproxy":
                    import yaml

                    port = slow_listen = free_port()
                    config = workdir / "cliproxy.yaml"
                    config.write_text(yaml.safe_dump(cliproxy_config(port, workdir, fast, slow), sort_keys=False))
                    cmd = cliproxy_cmd(mitmdump, confdir, config)
                    env = {k: v for k, v in os.environ.items() if k != "CLI_PROXY_API_KEY"}
                    service = Service("cliproxy", cmd, workdir / "cliproxy.log", cwd=workdir, env=env)
                    wait_port(service, port, 60, progress, "starting cliproxy (mitmdump -s addons/cliproxy.py)")
                    if http_get(port, "/healthz") != 200:
                        raise SetupError(f"cliproxy /healthz failed:\n{service.output()}")
                elif system == "litellm":
                    if litellm_python is None:
                        for t in rows:
                            t.status = litellm_reason
                        continue
                    port = slow_listen = free_port()
                    config = workdir / "litellm.yaml"
                    config.write_text(litellm_config(fast, slow))  # JSON is YAML
                    cmd = [str(litellm_python), "-m", "litellm.proxy.proxy_cli", "--config", str(config),
                           "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
                    service = Service("litellm", cmd, workdir / "litellm.log", cwd=workdir, env=litellm_env(),
                                      stop_signal=signal.SIGTERM)
                    t0 = time.monotonic()
                    while True:
                        if not service.alive():
                            raise SetupError(f"litellm exited with {service.proc.returncode}:\n{service.output()}")
                        try:
                            if http_get(port, "/health/liveliness") == 200:
                                break
                        except OSError:
                            pass
                        if time.monotonic() - t0 > 180:
                            raise SetupError(f"litellm was not ready after 180 s:\n{service.output()}")
                        progress.status(f"starting litellm ({time.monotonic() - t0:.0f} s)")
                        time.sleep(0.2)
                    progress.note(f"litellm ready in {time.monotonic() - t0:.1f} s (pid {service.pid}, 1 worker)")
            except SetupError as e:
                progress.note(f"{system}: could not start: {str(e).splitlines()[0]}")
                notes.append(f"{system} did not start: {e}")
                for t in rows:
                    t.status = "n/a (did not start; see the notes)"
                if service:
                    service.stop()
                continue
            if service is not None:
                notes.append(f"{system}: {' '.join(service.cmd)}")
            for t in rows:
                t.port, t.slow_port = port, slow_listen
                if service is not None:
                    pid = service.pid
                    t.pids = lambda pid=pid: descendants(pid)
                progress.phase(t.label)
                try:
                    asyncio.run(runner.row(t))
                except (OSError, asyncio.IncompleteReadError) as e:
                    t.status = f"n/a (failed: {type(e).__name__}: {e})"
                    progress.done(t.status)
                if service is not None and not service.alive():
                    progress.note(f"{system} died:\n{service.output()}")
                    break
            if service is not None:
                service.stop()
    except KeyboardInterrupt:
        stop_all()
        print("\nscripts/bench: interrupted", file=sys.stderr)
        return 130
    except SetupError as e:
        stop_all()
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        if args.keep:
            print(f"scripts/bench: work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    derive(targets)
    goals = check_targets(targets)
    print()
    print(
        f"cliproxy benchmark — {datetime.datetime.now():%Y-%m-%d %H:%M}, commit {(git_info()['commit'] or '?')[:10]}"
        f"{' (uncommitted changes)' if git_info()['dirty'] else ''}, mitmproxy {versions.get('mitmproxy', '?')}, "
        f"Python {platform.python_version()} (client), {os.cpu_count()} cores"
    )
    print(
        f"fake upstream: {s.latency_ms:g} ms latency; {s.requests} non-stream requests and {s.streams} "
        f"{s.events}-event streams per row, {s.rps_seconds:g} s per throughput phase."
    )
    print(
        "Both mitmdumps run with termlog_verbosity=warn and flow_detail=0 (no per-flow console output); "
        "plain mitmdump also with connection_strategy=lazy and stream_large_bodies=1 (as cliproxy: dial on "
        "the first request, relay bodies as they arrive)."
        + (f" LiteLLM {versions['litellm']}: 1 uvicorn worker, no master key, LITELLM_LOG=ERROR." if "litellm" in versions else "")
    )
    print(
        "added = median (p99 for p99) minus the direct connection's, for the client's format; ×direct and ×mitmdump = "
        "median ÷ theirs (rps: throughput ratio); added×mitm = added ÷ plain mitmdump's added; hooks = median "
        "x-cliproxy-overhead-ms (time in the addon's own hooks). Translated rows compare with the client's format."
    )
    print()
    print(table(targets, s))
    print()
    print("Targets:")
    for g in goals:
        verdict = "n/a " if g["pass"] is None else ("PASS" if g["pass"] else "FAIL")
        print(f"  [{verdict}] {g['target']}: {g['detail']}")
    print(f"\n(total run time {elapsed:.0f} s)")

    report = {
        "schema": 1,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform()},
        "versions": {"client_python": platform.python_version(), **versions},
        "mitmdump": str(mitmdump),
        "settings": {
            "latency_ms": s.latency_ms, "requests": s.requests, "streams": s.streams, "events": s.events,
            "rps_seconds": s.rps_seconds, "rps_warmup_seconds": s.rps_warm, "concurrency": list(s.concurrency),
            "open_streams": s.open_streams, "open_stream_seconds": s.open_seconds, "warmup_requests": s.warmup,
            "quick": args.quick,
        },
        "elapsed_seconds": round(elapsed, 1),
        "rows": [
            {"key": t.key, "label": t.label, "system": t.system, "client": t.client, "upstream": t.upstream,
             "status": t.status, "results": t.results}
            for t in targets
        ],
        "targets": goals,
        "notes": notes,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
