"""Benchmark: what the proxy costs, next to the floor, plain mitmdump, LiteLLM and claude-code-router.

Run it as `scripts/bench` (see `--help`). One run, on one machine and one fake upstream
(tests/fakes/upstream.py, in its own process, with a fixed latency), measures:

  1. direct to the fake (the floor);
  2. plain `mitmdump --mode reverse:` with no addon (mitmproxy's own cost);
  3. cliproxy, same-format pass-through;
  4. cliproxy, translated (an OpenAI client on a claude-api-key model, an Anthropic client on an
     openai-compatibility model), "n/a (translation not built)" while the proxy refuses it;
  5. cliproxy failing over (its streams only): a second cliproxy whose config adds, above each
     claude-api-key, a credential the fake answers with 429 on every request, with cooling off,
     so that every request tries it first and streams from the second credential;
  6. the LiteLLM proxy, in a throwaway virtual environment under ~/.cache/cliproxy-bench;
  7. claude-code-router (`ccr serve`, Node), installed under ~/.cache/cliproxy-bench/ccr, on the
     one path it serves: an Anthropic client on an OpenAI-compatible upstream. Its management
     process stores each request's log for seconds after the gateway answered: its batches start
     once its processes are quiet, and its CPU per request counts that work.

Figures (median and p99): added latency of a small non-streaming request, added time to the
first byte of a stream, total time of a 500-event stream, requests per second at 16 and 64
concurrent clients, peak RSS of the proxy with 200 open streams. They are printed as one table
(with each row's ratio to the direct connection and to plain mitmdump) and written as JSON.
The failed-over streams' rows stand under their first-attempt rows, with the difference.

The load client is this process (raw asyncio HTTP/1.1 on keep-alive connections, the same for
every target); the fakes and every proxy run in processes of their own. All systems run side by
side, but each figure is taken in interleaved rounds over the targets, and the systems not being
measured are stopped (SIGSTOP) meanwhile, so that a drift of the machine or a proxy's background
work does not favour one target over another.
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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

OPENAI_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-sonnet-4-5"
# Three fakes, one per kind of stream; cliproxy and LiteLLM tell them apart by the model name's
# suffix, direct and plain mitmdump by port.
#   long:  the long stream (500 events back to back), the non-stream requests and the throughput;
#   short: the time to first byte (a few events, the first one alone on the wire, as from a real
#          model: with 500 events back to back the first byte would measure relaying throughput);
#   slow:  the open streams (endless, events 250 ms apart: held until all are open at once).
VARIANTS = {"long": "", "short": "-short", "slow": "-slow"}
PROMPT = "Say hello in one short sentence."

OPENAI, ANTHROPIC = "openai-chat", "anthropic"

# The failover rows' system: a cliproxy whose first credential for each Anthropic model is this
# key, which every fake answers with FAILOVER_STATUS (no Retry-After hint).
FAILOVER = "cliproxy-failover"
FAILING_KEY = "sk-ant-bench-failing-000000"
FAILOVER_STATUS = 429
FAILOVER_METRICS = frozenset({"ttfb", "stream"})
FAILOVER_BOUND = 1.5
# --shared-store: a cliproxy whose pool state lives in a redis-server on loopback (started in the
# work folder), with two credentials per model so that every request takes the shared round-robin
# cursor (one round trip to Redis); its rows stand under the local cliproxy's.
SHARED = "cliproxy-shared"
SHARED_METRICS = frozenset({"nonstream", "ttfb", "rps16"})


# ---------------------------------------------------------------------------- settings


@dataclass
class Settings:
    latency_ms: float = 20.0
    requests: int = 200  # sequential non-stream requests per row
    streams: int = 60  # sequential streams per row, for the first byte and for the long stream
    events: int = 500  # text deltas of the long stream
    cap: float = 5.0  # seconds at most per row and sequential figure (LiteLLM's long streams)
    rps_seconds: float = 1.5  # measured time of each throughput figure, over rps_rounds windows
    rps_warm: float = 0.3  # discarded ramp before each window
    concurrency: tuple[int, ...] = (16, 64)
    open_streams: int = 200
    open_hold: float = 1.5  # seconds to keep sampling once all are open (then the client hangs up)
    open_timeout: float = 20.0  # give up waiting for all to be open after this long
    slow_events: int = 2000  # the open streams: endless for the phase (events slow_delay apart)
    slow_delay: float = 0.25
    short_events: int = 5  # the time-to-first-byte streams: short_events deltas, short_delay apart
    short_delay: float = 0.002
    warmup: int = 30  # non-stream requests to each target before measuring
    rounds: int = 10  # the non-stream requests are taken in this many interleaved rounds
    stream_rounds: int = 5
    rps_rounds: int = 2
    settle_cap: float = 20.0  # seconds at most to wait for a system's background work (ccr's)
    settle_batches: bool = True  # and wait for it before each latency batch too, not only for its CPU count

    freeze: bool = True  # stop (SIGSTOP) the systems not being measured


QUICK = dict(
    requests=24,
    streams=10,
    cap=0.6,
    rps_seconds=0.3,
    rps_warm=0.1,
    open_hold=0.2,
    open_timeout=8.0,
    warmup=5,
    rounds=3,
    stream_rounds=2,
    rps_rounds=1,
    settle_cap=10.0,
    settle_batches=False,
)


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
        """A line of its own, above the status line (which the next status() redraws)."""
        if self.tty and self._shown:
            sys.stderr.write("\r\033[K")
            self._shown = ""
        sys.stderr.write(f"{self.prefix if self.prefix == '[setup]' else '       '} {text}\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A process this run started (in its own session), with its output in a log file."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGINT,
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log
        self.stop_signal = stop_signal
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.frozen = False
        RUNNING.append(self)

    def freeze(self, frozen: bool) -> None:
        """Stop (SIGSTOP) or resume its process group: nothing but the measured target runs."""
        if frozen != self.frozen and self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)
                self.frozen = frozen
            except (ProcessLookupError, PermissionError):
                pass

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
        self.freeze(False)
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


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL if this process dies, even by SIGKILL, so that nothing is left over.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of `pids`, in seconds."""
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU time of each of `pids` still running, in seconds."""
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            out[p] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two cpu_by_pid() samples (a process new since then counts whole; one
    gone since then is lost, having left nothing to read)."""
    return sum(t - before.get(p, 0.0) for p, t in after.items())


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


def wait_port(
    service: Service,
    port: int,
    timeout: float,
    progress: Progress,
    what: str,
    *,
    ready: Callable[[], bool] | None = None,
    failure: Callable[[], str | None] | None = None,
) -> None:
    """Until `service` accepts connections on `port` (or `ready()` says so); SetupError if it
    exits, `failure()` names a reason, or `timeout` passes."""
    started = time.monotonic()
    while True:
        if not service.alive():
            raise SetupError(f"{service.name} exited with {service.proc.returncode}:\n{service.output()}")
        if failure is not None and (why := failure()):
            raise SetupError(f"{service.name}: {why}\n{service.output()}")
        try:
            if ready is not None:
                if ready():
                    return
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
        except OSError:
            pass
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise SetupError(f"{service.name} was not ready on {port} within {timeout:.0f} s:\n{service.output()}")
        progress.status(f"{what} ({elapsed:.0f} s)")
        time.sleep(0.05)


def http_get(port: int, path: str, timeout: float = 2.0) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64)
    return int(head[9:12]) if head.startswith(b"HTTP/") else 0


class SetupError(RuntimeError):
    pass


def start_fake(
    python: str,
    workdir: Path,
    name: str,
    latency: float,
    events: int,
    event_delay: float,
    fail: Sequence[str] = (),
) -> tuple[Service, str]:
    log = workdir / f"{name}.log"
    service = Service(
        name,
        [
            python,
            "-m",
            "tests.fakes.upstream",
            "--latency",
            str(latency),
            "--events",
            str(events),
            "--event-delay",
            str(event_delay),
            *(arg for key in fail for arg in ("--fail", f"{key}={FAILOVER_STATUS}")),
        ],
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


def fake_failures(service: Service) -> int | None:
    """How many requests a stopped fake answered with its --fail status (it says so on exit)."""
    found = re.findall(r"^answered (\d+) requests with a --fail status$", service.output(), re.M)
    return int(found[-1]) if found else None


# ---------------------------------------------------------------------------- HTTP client


# Successful (2xx) answers per port, whatever the phase: what the failover check compares with
# the fakes' count of failed attempts.
ANSWERED: dict[int, int] = {}


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
        if status < 300:
            ANSWERED[self.port] = ANSWERED.get(self.port, 0) + 1
        return status, t0, first or done, done, overhead, b"".join(parts)


@dataclass
class Target:
    """One row of the table: who is measured, speaking which format to which upstream."""

    key: str
    system: str  # direct | mitmdump | cliproxy | litellm
    client: str  # the client's format
    upstream: str  # the upstream's format
    measure_rss: bool = False
    ports: dict[str, int] = field(default_factory=dict)  # by variant
    model: str = ""  # the upstream's model; cliproxy and LiteLLM add the variant's suffix
    pids: Callable[[], list[int]] | None = None
    status: str = "ok"
    results: dict[str, Any] = field(default_factory=dict)
    metrics: frozenset[str] | None = None  # the figures taken of this row (None: all)
    first_attempt: str = ""  # a failover row: the key of the row it repeats with a failed attempt first
    local: str = ""  # a shared-store row: the key of the row it repeats with local state
    # Its processes go on working after a burst (ccr's management process stores the request log
    # for seconds): its CPU count waits until they are quiet and this says no work is queued.
    background: bool = False
    pending: Callable[[], bool] | None = None

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
        if self.system == FAILOVER:
            return f"cliproxy · {how}, failed over (cooling off)"
        if self.system == SHARED:
            return f"cliproxy · {how}, shared state store"
        return f"{self.system} · {how}"

    @property
    def row_label(self) -> str:
        """The table's: a failover row stands under its first-attempt row."""
        if self.system == SHARED:
            return "  ↳ shared state (Redis, loopback)"
        return "  ↳ failed over (cooling off)" if self.system == FAILOVER else self.label

    def takes(self, metric: str) -> bool:
        return self.metrics is None or metric in self.metrics

    @property
    def port(self) -> int:
        return self.ports["long"]

    def request(self, *, stream: bool, variant: str = "long") -> bytes:
        port = self.ports[variant]
        model = self.model + (VARIANTS[variant] if self.system not in ("direct", "mitmdump") else "")
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


# ---------------------------------------------------------------------------- measuring


def _even(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


REQUEST_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class Runner:
    """Measures every target metric by metric, in interleaved rounds.

    All systems run side by side, but only the measured one is scheduled: the others are stopped
    (SIGSTOP) meanwhile, so that none can spend CPU in the background while another is measured.
    Each metric is taken in rounds, and every round visits every target in a rotating order, so
    that a slow drift of the machine (CPU frequency, the page cache, other tenants) hits every
    target alike rather than whichever happened to run last.
    """

    def __init__(self, settings: Settings, progress: Progress, targets: list[Target], services: dict[str, Service]):
        self.s = settings
        self.progress = progress
        self.targets = targets
        self.services = services
        self.phase_seconds: dict[str, float] = {}
        self._phase: tuple[str, float] | None = None

    def phase(self, name: str) -> None:
        now = time.monotonic()
        if self._phase is not None:
            self.phase_seconds[self._phase[0]] = round(now - self._phase[1], 1)
        self._phase = (name, now) if name else None
        if name:
            self.progress.phase(name)

    def focus(self, t: Target | None) -> None:
        for system, service in self.services.items():
            service.freeze(self.s.freeze and t is not None and t.system != system)

    def live(self, metric: str | None = None) -> list[Target]:
        """The targets still serving (and taking `metric`, if given)."""
        out = []
        for t in self.targets:
            if t.status != "ok" or (metric is not None and not t.takes(metric)):
                continue
            service = self.services.get(t.system)
            if service is not None and not service.alive():
                t.status = f"n/a ({t.system} exited during the run; see the notes)"
                continue
            out.append(t)
        return out

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.phase("")
            self.focus(None)

    async def _run(self) -> None:
        s, p = self.s, self.progress
        self.phase("probe and warm-up")
        for t in self.live():
            await self.probe_and_warm(t)
        served = [t.label for t in self.live()]
        p.done(f"{len(served)} of {len(self.targets)} targets serve their case")

        self.phase(f"{s.open_streams} open streams")
        for t in self.live():
            if t.measure_rss and t.pids is not None:
                self.focus(t)
                t.results["rss"] = await self.open_streams(t)
        p.done(
            ", ".join(f"{t.label} {t.results['rss']['peak_mb']:.0f} MB" for t in self.targets if "rss" in t.results)
            or "no proxy to measure"
        )

        self.phase("non-stream latency")
        await self.sequential("nonstream", s.requests, s.rounds, stream=False, variant="long")
        self.phase("time to first byte")
        await self.sequential("ttfb", s.streams, s.stream_rounds, stream=True, variant="short", ttfb=True)
        self.phase(f"{s.events}-event stream")
        await self.sequential("stream", s.streams, s.stream_rounds, stream=True, variant="long")
        for c in s.concurrency:
            self.phase(f"{c} concurrent clients")
            await self.throughput_rounds(c)

    # -- probe -----------------------------------------------------------------------------

    async def probe_and_warm(self, t: Target) -> None:
        s, p = self.s, self.progress
        self.focus(t)
        nonstream, stream = t.request(stream=False), t.request(stream=True)
        p.status(f"{t.label}: probe")
        conn = Conn(t.port)
        try:
            status, *_, body = await conn.request(nonstream, keep_body=True)
            if status < 300:
                status, *_, body = await conn.request(stream, keep_body=True)
        except REQUEST_ERRORS as e:
            conn.close()
            t.status = f"n/a (request failed: {type(e).__name__}: {e})"
            p.note(f"{t.label}: {t.status}")
            return
        if status >= 300:
            conn.close()
            text = body.decode(errors="replace")
            if "not built" in text and "translat" in text:
                t.status = "n/a (translation not built)"
            else:
                text = " ".join(re.sub(r"<[^>]*>", " ", text).split())  # mitmproxy's own errors are HTML
                t.status = f"n/a (HTTP {status}: {text[:70]}{'…' if len(text) > 70 else ''})"
            p.note(f"{t.label}: {t.status}")
            return
        events = count_events(body)
        t.results["probe"] = {"stream_events_seen": events, "stream_bytes": len(body)}
        if events < s.events:
            p.note(f"{t.label}: the probe stream had {events} events for {s.events} text deltas")
        # Warm-up: the proxy's code paths, its connection pools, the fake's.
        try:
            for i in range(s.warmup):
                await conn.request(nonstream)
                p.status(f"{t.label}: warm-up {i + 1}/{s.warmup}")
            for _ in range(3 if s.warmup >= 10 else 0):  # (the probe's stream was one)
                await conn.request(stream)
        except REQUEST_ERRORS as e:
            t.status = f"n/a (warm-up failed: {type(e).__name__}: {e})"
            p.note(f"{t.label}: {t.status}")
            return
        finally:
            conn.close()
        if s.rps_warm >= 0.3:
            await self.throughput(
                t, nonstream, 16, 0.3, 0.0, lambda done: p.status(f"{t.label}: warm-up, 16 clients, {done}")
            )
        if t.background and s.settle_batches:
            await self.settle(t)

    # -- one client, one request at a time ------------------------------------------------

    async def sequential(
        self, metric: str, n: int, rounds: int, *, stream: bool, variant: str, ttfb: bool = False
    ) -> None:
        p = self.progress
        targets = self.live(metric)
        if not targets:
            return
        rounds = max(1, min(rounds, n))
        budget = self.s.cap / rounds  # per row and round
        values: dict[str, list[float]] = {t.key: [] for t in targets}
        hooks: dict[str, list[float]] = {t.key: [] for t in targets}
        errors: dict[str, int] = {t.key: 0 for t in targets}
        p.status(f"0/{n} per target, {rounds} rounds", force=True)
        for r, k in enumerate(_even(n, rounds)):
            shift = r % len(targets)
            for t in targets[shift:] + targets[:shift]:
                if t.status != "ok":
                    continue
                data = t.request(stream=stream, variant=variant)
                self.focus(t)
                if t.background and self.s.settle_batches:
                    await self.settle(t)  # its calm figures, not the last batch's aftermath
                conn = Conn(t.ports[variant])
                try:
                    await conn.request(data)  # a fresh connection per batch, opened outside the measure
                except REQUEST_ERRORS:
                    errors[t.key] += 1
                    conn.close()
                    continue
                batch_started = time.perf_counter()
                for i in range(k):
                    if i and time.perf_counter() - batch_started > budget:
                        break  # a slow row gets fewer samples (see "n" in the JSON)
                    try:
                        status, t0, t_first, t_done, overhead, _ = await conn.request(data)
                    except REQUEST_ERRORS:
                        errors[t.key] += 1
                        continue
                    if status >= 300:
                        errors[t.key] += 1
                        continue
                    values[t.key].append(((t_first if ttfb else t_done) - t0) * 1000)
                    if overhead is not None:
                        hooks[t.key].append(overhead)
                    p.status(f"round {r + 1}/{rounds}: {t.label} {len(values[t.key])}/{n}")
                conn.close()
            if not p.tty:
                p.status(f"round {r + 1}/{rounds} done", force=True)
        for t in targets:
            t.results[metric] = summary(values[t.key], errors[t.key], hooks[t.key])
            t.results[metric]["wanted"] = n
        p.done(", ".join(f"{t.label} {fmt_ms(t.results[metric]['median_ms'])}" for t in targets))

    # -- many clients ------------------------------------------------------------------------

    async def throughput_rounds(self, clients: int) -> None:
        s, p = self.s, self.progress
        targets = self.live(f"rps{clients}")
        if not targets:
            return
        rounds = s.rps_rounds
        window = s.rps_seconds / rounds
        lat: dict[str, list[float]] = {t.key: [] for t in targets}
        errors: dict[str, int] = {t.key: 0 for t in targets}
        cpu: dict[str, float] = {t.key: 0.0 for t in targets}
        after: dict[str, float] = {t.key: 0.0 for t in targets}  # of cpu: once the burst was over
        settled: dict[str, float] = {t.key: 0.0 for t in targets}
        sent: dict[str, int] = {t.key: 0 for t in targets}
        measured: dict[str, float] = {t.key: 0.0 for t in targets}
        p.status(f"{rounds} rounds of {window:g} s per target", force=True)
        for r in range(rounds):
            shift = r % len(targets)
            for t in targets[shift:] + targets[:shift]:
                if t.status != "ok":
                    continue
                self.focus(t)
                pids = t.pids() if t.pids else []
                cpu_before = cpu_seconds(pids)
                out = await self.throughput(
                    t,
                    t.request(stream=False),
                    clients,
                    window,
                    s.rps_warm,
                    lambda done, r=r, t=t: p.status(f"round {r + 1}/{rounds}: {t.label}: {done} requests"),
                )
                cpu[t.key] += cpu_seconds(pids) - cpu_before
                if t.background:
                    extra, waited = await self.settle(t)
                    cpu[t.key] += extra
                    after[t.key] += extra
                    settled[t.key] = max(settled[t.key], waited)
                sent[t.key] += out["requests"]
                measured[t.key] += out["seconds"]
                lat[t.key] += out["latencies"]
                errors[t.key] += out["errors"]
        for t in targets:
            out = summary(lat[t.key], errors[t.key])
            out.update(clients=clients, seconds=measured[t.key], rps=len(lat[t.key]) / measured[t.key])
            if t.pids and sent[t.key]:
                # The proxy's own CPU time (all its processes) per request, ramps included.
                out["proxy_cpu_ms_per_request"] = cpu[t.key] * 1000 / sent[t.key]
                if t.background:
                    out["proxy_cpu_after_burst_ms_per_request"] = after[t.key] * 1000 / sent[t.key]
                    out["settle_seconds_max"] = round(settled[t.key], 1)
                    out["settle_capped"] = settled[t.key] >= s.settle_cap
            t.results[f"rps{clients}"] = out
        p.done(", ".join(f"{t.label} {t.results[f'rps{clients}']['rps']:.0f}/s" for t in targets))

    async def throughput(
        self, t: Target, data: bytes, clients: int, seconds: float, warm: float, show: Callable[[int], None]
    ) -> dict[str, Any]:
        """`clients` connections sending back to back; what completes within `seconds`.

        The window opens `warm` seconds after the start, and not before `clients` answers have
        come (a slow proxy's pipeline is full only then). Requests in flight when it closes are
        waited for, not abandoned: a proxy would go on working on them during the next measure
        (and cliproxy would count the hang-ups as upstream failures).
        """
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        window: list[float] = []  # [opens, closes], once `clients` answers have come
        all_primed = loop.create_future()
        lat: list[float] = []
        errors = 0
        done = 0

        def open_window() -> None:
            if not window:
                now = time.perf_counter()
                opens = max(now, start + warm)
                # At least as long as the pipeline took to fill (about one request's latency under
                # this load, up to 3 s), so that a slow proxy completes enough requests to count.
                window.extend((opens, opens + max(seconds, min(3.0, now - start))))
            if not all_primed.done():
                all_primed.set_result(None)

        async def client() -> None:
            nonlocal errors, done
            conn = Conn(t.port)
            try:
                while not window or time.perf_counter() < window[1]:
                    try:
                        status, t0, _, t_done, _, _ = await conn.request(data)
                    except REQUEST_ERRORS:
                        errors += 1
                        await asyncio.sleep(0.01)
                        continue
                    done += 1
                    if done == clients:
                        open_window()
                    if status >= 300:
                        errors += 1
                    elif window and window[0] <= t_done <= window[1]:
                        lat.append((t_done - t0) * 1000)
            finally:
                conn.close()

        async def ticker() -> None:
            while True:
                show(done)
                await asyncio.sleep(0.1)

        tick = asyncio.create_task(ticker())
        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        try:
            try:
                await asyncio.wait_for(asyncio.shield(all_primed), 30)
            except TimeoutError:
                open_window()  # some client never got an answer: measure what there is
            await asyncio.wait(tasks, timeout=window[1] - time.perf_counter() + 30)
        finally:
            tick.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"latencies": lat, "errors": errors, "requests": done, "seconds": window[1] - window[0]}

    async def settle(self, t: Target) -> tuple[float, float]:
        """Wait (at most settle_cap) until `t` has no work queued and its processes are quiet: two
        0.25 s windows in a row under 10% of a core. Returns the CPU seconds they spent meanwhile
        and the seconds waited."""
        assert t.pids is not None
        p = self.progress
        started = time.monotonic()
        before = last = cpu_by_pid(t.pids())
        quiet = 0
        while quiet < 2 and time.monotonic() - started < self.s.settle_cap:
            await asyncio.sleep(0.25)
            now = cpu_by_pid(t.pids())
            busy = cpu_delta(last, now) >= 0.025 or (t.pending is not None and t.pending())
            quiet = 0 if busy else quiet + 1
            last = now
            p.status(f"{t.label}: waiting for its background work ({time.monotonic() - started:.1f} s)")
        return cpu_delta(before, last), time.monotonic() - started

    # -- memory ------------------------------------------------------------------------------

    async def open_streams(self, t: Target) -> dict[str, Any]:
        """Open `open_streams` endless slow streams; once all are open at once (or after
        `open_timeout`), keep sampling the proxy's RSS for `open_hold` seconds, then hang up."""
        s, p = self.s, self.progress
        assert t.pids is not None
        data = t.request(stream=True, variant="slow")
        pids = t.pids()
        idle = rss_bytes(pids)
        peak = idle
        open_now = max_open = errors = 0
        ramp = 0.5  # spread the connects, so that no listen backlog overflows
        all_open = asyncio.Event()

        async def one(i: int) -> None:
            nonlocal open_now, errors
            await asyncio.sleep(ramp * i / s.open_streams)
            conn = Conn(t.ports["slow"])
            got_first = False

            def first() -> None:
                nonlocal got_first, open_now, max_open
                got_first = True
                open_now += 1
                max_open = max(max_open, open_now)
                if open_now >= s.open_streams:
                    all_open.set()

            try:
                status, *_ = await conn.request(data, on_first=first)
                errors += status >= 300
            except REQUEST_ERRORS:
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
                p.status(f"{t.label}: {open_now}/{s.open_streams} open, RSS peak {peak / 2**20:.0f} MB")
                await asyncio.sleep(0.05)

        p.status(f"{t.label}: opening {s.open_streams} streams", force=True)
        started = time.monotonic()
        sampler = asyncio.create_task(sample())
        streams = [asyncio.create_task(one(i)) for i in range(s.open_streams)]
        try:
            try:
                await asyncio.wait_for(all_open.wait(), s.open_timeout)
            except TimeoutError:
                pass
            time_to_open = time.monotonic() - started
            await asyncio.sleep(s.open_hold)
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            sampler.cancel()
        peak = max(peak, rss_bytes(pids))
        await asyncio.sleep(min(0.5, s.open_hold))  # let the proxy notice the hang-ups before the next phase
        return {
            "streams": s.open_streams,
            "max_open_at_once": max_open,
            "seconds_to_open_all": round(time_to_open, 2) if max_open >= s.open_streams else None,
            "hold_seconds": s.open_hold,
            "errors": errors,
            "idle_mb": idle / 2**20,
            "peak_mb": peak / 2**20,
            "hwm_mb": hwm_bytes(pids) / 2**20,
        }


# ---------------------------------------------------------------------------- the systems under test


def mitmdump_path(python: str | None) -> Path:
    if python is None:
        return ROOT / ".venv" / "bin" / "mitmdump"
    p = Path(python).expanduser().absolute()  # not resolve(): a venv's python links out of the venv
    if p.name.startswith("mitmdump"):
        return p
    return p.parent / "mitmdump"


def common_mitm_options(confdir: Path) -> list[str]:
    # Equal for plain mitmdump and cliproxy: no per-flow console output, the same CA folder.
    return [
        "--set",
        f"confdir={confdir}",
        "--set",
        "termlog_verbosity=warn",
        "--set",
        "flow_detail=0",
    ]


def plain_mitmdump_cmd(mitmdump: Path, confdir: Path, fakes: dict[str, str], ports: dict[str, int]) -> list[str]:
    modes = [arg for v in VARIANTS for arg in ("--mode", f"reverse:{fakes[v]}@{ports[v]}")]
    return [
        str(mitmdump),
        *modes,
        "--listen-host",
        "127.0.0.1",
        *common_mitm_options(confdir),
        # What cliproxy does for itself: dial the upstream on the first request, not on connect,
        # and relay response bodies as they arrive (without an addon, mitmproxy buffers them;
        # a stream would reach the client only once complete).
        "--set",
        "connection_strategy=lazy",
        "--set",
        "stream_large_bodies=1",
    ]


def cliproxy_config(port: int, workdir: Path, fakes: dict[str, str]) -> dict[str, Any]:
    # One credential per fake and vendor; each serves only its own model names, so that a client
    # format can reach the other vendor only by translation.
    return {
        "host": "127.0.0.1",
        "port": port,
        "auth-dir": str(workdir / "auth"),
        "claude-api-key": [
            {"api-key": f"sk-ant-bench-{v}-000000", "base-url": fakes[v], "models": [{"name": CLAUDE_MODEL + sfx}]}
            for v, sfx in VARIANTS.items()
        ],
        "gemini-api-key": [{"api-key": "bench-gemini-key-000000"}],
        "openai-compatibility": [
            {
                "name": f"fake-{v}",
                "base-url": f"{fakes[v]}/v1",
                "api-key-entries": [{"api-key": f"sk-bench-{v}-0000000000"}],
                "models": [{"name": OPENAI_MODEL + sfx}],
            }
            for v, sfx in VARIANTS.items()
        ],
        # Vendor hosts not named by a base-url (the gemini entry) go to the fake as well.
        "upstream-overrides": {
            host: fakes["long"] for host in ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com")
        },
        # To measure a feature on and off, e.g. CLIPROXY_BENCH_CONFIG='{"usage-db": false}'.
        **json.loads(os.environ.get("CLIPROXY_BENCH_CONFIG") or "{}"),
    }


def failover_config(port: int, workdir: Path, fakes: dict[str, str]) -> dict[str, Any]:
    """cliproxy's config with, above each claude-api-key, one of higher priority that the fake
    fails (FAILING_KEY): every Anthropic model's request tries it first, then fails over."""
    config = cliproxy_config(port, workdir, fakes)
    config["auth-dir"] = str(workdir / "auth-failover")
    # Without cooling, every request tries the failing credential again: each one pays the
    # failover, rather than only the first after each rest.
    config["disable-cooling"] = True
    config["claude-api-key"] = [
        entry
        for v, sfx in VARIANTS.items()
        for entry in (
            {"api-key": FAILING_KEY, "base-url": fakes[v], "priority": 1, "models": [{"name": CLAUDE_MODEL + sfx}]},
            {"api-key": f"sk-ant-bench-{v}-000000", "base-url": fakes[v], "models": [{"name": CLAUDE_MODEL + sfx}]},
        )
    ]
    return config


# Targets with no other figure to be relative to.
HOOKS_LIMIT_MS = 0.1
RSS_LIMIT_MB = 150

# cliproxy as `scripts/run` runs it: optimised bytecode, which skips the type checks mitmproxy
# makes of every request and response it builds under __debug__ only. Plain mitmdump runs
# as its users run it, with this process's environment.
RUN_ENV = {"PYTHONOPTIMIZE": "1"}


def shared_config(port: int, workdir: Path, fakes: dict[str, str], store: str) -> dict[str, Any]:
    """cliproxy's config with its pool state in the Redis at `store`, and a second credential
    beside each one (round-robin over two: each request advances the shared cursor)."""
    config = cliproxy_config(port, workdir, fakes)
    config["auth-dir"] = str(workdir / "auth-shared")
    config["state-store"] = store
    config["claude-api-key"] = [
        {**entry, "api-key": entry["api-key"] + suffix} for entry in config["claude-api-key"] for suffix in ("", "-2")
    ]
    for service in config["openai-compatibility"]:
        first = service["api-key-entries"][0]["api-key"]
        service["api-key-entries"] = [{"api-key": first}, {"api-key": first + "-2"}]
    return config


def start_redis(workdir: Path) -> tuple[Service, str]:
    """A redis-server on a free loopback port, its data (none kept) in the work folder."""
    executable = shutil.which("redis-server") or shutil.which("valkey-server")
    if executable is None:
        raise SetupError("--shared-store needs redis-server (apt-get install redis-server)")
    folder = workdir / "redis"
    folder.mkdir(exist_ok=True)
    port = free_port()
    cmd = [executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"]
    service = Service("redis-server", cmd, workdir / "redis.log", cwd=folder, stop_signal=signal.SIGTERM)
    return service, f"redis://127.0.0.1:{port}/0"


def cliproxy_cmd(mitmdump: Path, confdir: Path, config: Path) -> list[str]:
    return [
        str(mitmdump),
        "-s",
        str(ADDON),
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(free_port()),
        *common_mitm_options(confdir),
        "--set",
        f"cliproxy_config={config}",
    ]


def litellm_config(fakes: dict[str, str]) -> str:
    entries = []
    for variant, suffix in VARIANTS.items():
        base = fakes[variant]
        entries.append(
            {
                "model_name": OPENAI_MODEL + suffix,
                "litellm_params": {
                    "model": f"openai/{OPENAI_MODEL}",
                    "api_base": f"{base}/v1",
                    "api_key": "sk-bench-0000",
                },
            }
        )
        entries.append(
            {
                "model_name": CLAUDE_MODEL + suffix,
                "litellm_params": {
                    "model": f"anthropic/{CLAUDE_MODEL}",
                    "api_base": base,
                    "api_key": "sk-ant-bench-0000",
                },
            }
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


def _run_logged(
    cmd: list[str], log: Any, progress: Progress, what: str, started: float, cwd: Path, env: dict[str, str]
) -> int:
    """Run `cmd` with its output in `log`, a progress line every 15 s (off a terminal)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    next_line = 15.0
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            progress.status(f"{what}: {elapsed:.0f} s")
            if not progress.tty and elapsed >= next_line:
                progress.status(f"{what}: {elapsed:.0f} s", force=True)
                next_line += 15
            time.sleep(0.25)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode


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
        code = _run_logged(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--timeout",
                "30",
                "--retries",
                "2",
                "litellm[proxy]",
            ],
            log,
            progress,
            "installing litellm[proxy]",
            started,
            cwd=venv.parent,
            env=dict(os.environ),
        )
        if code != 0:
            shutil.rmtree(venv, ignore_errors=True)
    elapsed = time.monotonic() - started
    if code != 0:
        lines = [
            ln
            for ln in log_path.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith("WARNING: Location")
        ]
        why = lines[-1].strip() if lines else f"pip exited with {code}"
        return None, f"pip install 'litellm[proxy]' failed after {elapsed:.0f} s: {why[:200]} (log: {log_path})"
    version = (
        subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "?"
    )
    marker.write_text(version + "\n")
    progress.done(f"installed litellm {version} in {elapsed:.0f} s")
    return python, version


# claude-code-router (ccr): a Node gateway serving Anthropic clients from OpenAI-compatible
# providers, the peer for that one path. Its package bundles its gateway (@the-next-ai/*), which
# it still lists as dependencies although the npm registry has neither: `npm install` of the
# package fails, so the bench unpacks it with `npm pack` and installs only the dependencies its
# code loads at run time.
CCR = "ccr"
CCR_PACKAGE = "@musistudio/claude-code-router"
CCR_VERSION = "3.1.1"
CCR_CLIENT_KEY = "sk-bench-client"  # what Target.request sends; ccr checks it (its APIKEY)
CCR_QUICK_METRICS = frozenset({"nonstream", "ttfb", "stream"})


def _last_line(log_path: Path, default: str) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERR!" in ln or "error" in ln.lower()]
    return ((errors or lines or [default])[-1])[:200]


def ccr_runtime_deps(package: Path) -> dict[str, str]:
    """The package's dependencies that its code loads (`require("name")`); the others are bundled."""
    declared: dict[str, str] = json.loads((package / "package.json").read_text()).get("dependencies", {})
    code = "\n".join(p.read_text(errors="replace") for p in (package / "dist").rglob("*.js"))
    return {
        name: spec
        for name, spec in declared.items()
        if f'require("{name}")' in code or f'require("{name}/' in code
    }


def node_headers_dir(node: str) -> Path | None:
    """The prefix of a Node install that ships its C headers (for node-gyp without a download)."""
    prefix = Path(node).resolve().parent.parent
    return prefix if (prefix / "include" / "node" / "common.gypi").exists() else None


def ensure_ccr(folder: Path, progress: Progress) -> tuple[Path | None, str]:
    """claude-code-router's CLI script (installing it on first use), or None and why not."""
    cli = folder / "package" / "dist" / "main" / "cli.js"
    marker = folder / ".cliproxy-bench-installed"
    if marker.exists() and cli.exists():
        return cli, marker.read_text().strip()
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm are needed to install claude-code-router (neither is on PATH)" if not (
            node or npm
        ) else f"{'npm' if node else 'node'} is not on PATH"
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted install
    folder.mkdir(parents=True)
    log_path = folder.parent / "ccr-install.log"
    spec = f"{CCR_PACKAGE}@{CCR_VERSION}"
    progress.note(f"installing {spec} into {folder} (first run only; log in {log_path})")
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    headers = node_headers_dir(node)
    if headers is not None:
        # better-sqlite3 fetches a prebuilt binary from its releases, or else compiles with
        # node-gyp, which downloads Node's headers unless told where they are.
        env["npm_config_nodedir"] = str(headers)
    try:
        with log_path.open("wb") as log:
            code = _run_logged(
                [npm, "pack", spec, "--pack-destination", str(folder)],
                log, progress, f"fetching {spec}", started, folder, env,
            )  # fmt: skip
            tarballs = list(folder.glob("*.tgz"))
            if code != 0 or len(tarballs) != 1:
                raise SetupError(f"npm pack {spec} failed: {_last_line(log_path, f'exit {code}')}")
            import tarfile

            with tarfile.open(tarballs[0]) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(folder, filter="data")
                else:  # Python < 3.12 (and before the backports)
                    tar.extractall(folder)
            tarballs[0].unlink()
            deps = ccr_runtime_deps(folder / "package")
            (folder / "package.json").write_text(
                json.dumps({"private": True, "description": f"{spec}'s run-time dependencies", "dependencies": deps})
            )
            what = f"installing {spec}'s dependencies ({', '.join(deps) or 'none'}; better-sqlite3 may compile)"
            code = _run_logged(
                [npm, "install", "--omit=dev", "--no-audit", "--no-fund", "--no-package-lock"],
                log, progress, what, started, folder, env,
            )  # fmt: skip
            if code != 0:
                raise SetupError(f"npm install of {', '.join(deps)} failed: {_last_line(log_path, f'exit {code}')}")
            if "better-sqlite3" in deps:
                check = subprocess.run(
                    [node, "-e", "new (require('better-sqlite3'))(':memory:').close()"],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                )
                if check.returncode != 0:
                    why = (check.stderr.strip().splitlines() or ["?"])[-1][:200]
                    raise SetupError(f"better-sqlite3 (native) does not load: {why}")
    except SetupError as e:
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"{e} (after {time.monotonic() - started:.0f} s; log: {log_path})"
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    version = json.loads((folder / "package" / "package.json").read_text()).get("version", "?")
    marker.write_text(version + "\n")
    progress.done(f"installed claude-code-router {version} in {time.monotonic() - started:.0f} s")
    return cli, version


def ccr_config(port: int, fakes: dict[str, str]) -> dict[str, Any]:
    # Its legacy config.json, which it imports into its config.sqlite on first start (and then
    # deletes): one provider per fake, each serving its own model name, so that the model a client
    # asks for picks the fake as it does for cliproxy and LiteLLM.
    return {
        "HOST": "127.0.0.1",
        "PORT": port,
        "APIKEY": CCR_CLIENT_KEY,
        "LOG": False,
        "Providers": [
            {
                "name": f"fake-{v}",
                "api_base_url": f"{fakes[v]}/v1/chat/completions",
                "api_key": f"sk-bench-{v}-0000000000",
                "models": [OPENAI_MODEL + sfx],
            }
            for v, sfx in VARIANTS.items()
        ],
        "Router": {"default": f"fake-long,{OPENAI_MODEL}"},
    }


def ccr_home(workdir: Path) -> Path:
    return workdir / "ccr-home"


def ccr_pending(home: Path) -> bool:
    """Whether ccr has request traces not yet stored: its gateway leaves one folder per request in
    the spool after answering, which its management process takes in (2 s old at the earliest,
    polling every second) and moves to the hidden folders there."""
    try:
        spool = os.listdir(home / ".claude-code-router" / "app-data" / "raw-trace-spool")
    except OSError:
        return False
    return any(not name.startswith(".") for name in spool)


def ccr_env(home: Path) -> dict[str, str]:
    """A scratch HOME (it writes its state there and rewrites ~/.claude, ~/.codex and
    ~/.config), without the variables that point it at other homes, vendors or proxies."""
    prefixes = ("CCR_", "ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX", "GROK_", "KIMI_", "ZCODE_", "OPENCODE_", "XDG_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(prefixes) and not k.upper().endswith("_PROXY") and not k.startswith("npm_")
    }
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "NO_PROXY": "*",
        }
    )
    return env


def launch_system(
    system: str,
    mitmdump: Path,
    confdir: Path,
    workdir: Path,
    fakes: dict[str, str],
    litellm_python: Path | None,
    ccr_cli: Path | None = None,
) -> tuple[Service | None, dict[str, int], Callable[[Progress], None]]:
    """Start one system under test without waiting: its process (None for direct), its port per
    fake, and a function that waits until it serves (raising SetupError if it does not)."""
    if system == "direct":
        return None, {v: int(url.rsplit(":", 1)[1]) for v, url in fakes.items()}, lambda progress: None
    if system == "mitmdump":
        ports = {v: free_port() for v in VARIANTS}
        service = Service(
            "plain mitmdump", plain_mitmdump_cmd(mitmdump, confdir, fakes, ports), workdir / "mitmdump.log", cwd=workdir
        )

        def wait_mitmdump(progress: Progress) -> None:
            for p in ports.values():
                wait_port(service, p, 60, progress, "starting plain mitmdump")

        return service, ports, wait_mitmdump
    port = free_port()
    ports = {v: port for v in VARIANTS}
    if system in ("cliproxy", FAILOVER, SHARED):
        import yaml

        config = workdir / f"{system}.yaml"
        if system == SHARED:
            redis_service, store = start_redis(workdir)
            redis_port, deadline = int(store.rsplit(":", 1)[1].split("/")[0]), time.monotonic() + 30
            while True:  # up in milliseconds: no progress line for it
                try:
                    socket.create_connection(("127.0.0.1", redis_port), timeout=0.2).close()
                    break
                except OSError:
                    if not redis_service.alive() or time.monotonic() > deadline:
                        raise SetupError(f"redis-server did not start:\n{redis_service.output()}") from None
                    time.sleep(0.02)
            settings = shared_config(port, workdir, fakes, store)
        else:
            settings = (failover_config if system == FAILOVER else cliproxy_config)(port, workdir, fakes)
        config.write_text(yaml.safe_dump(settings, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k != "CLI_PROXY_API_KEY"}
        env.update(RUN_ENV)
        service = Service(
            system, cliproxy_cmd(mitmdump, confdir, config), workdir / f"{system}.log", cwd=workdir, env=env
        )

        def wait_cliproxy(progress: Progress) -> None:
            wait_port(service, port, 60, progress, f"starting {system} (mitmdump -s addons/cliproxy.py)")
            if http_get(port, "/healthz") != 200:
                raise SetupError(f"{system}: GET /healthz failed:\n{service.output()}")

        return service, ports, wait_cliproxy
    if system == CCR:
        assert ccr_cli is not None
        home = ccr_home(workdir)
        (home / ".claude-code-router").mkdir(parents=True)
        (home / ".claude-code-router" / "config.json").write_text(json.dumps(ccr_config(port, fakes), indent=2))
        node = shutil.which("node") or "node"
        # `ccr serve`: its management service in the foreground, which starts the gateway (a child
        # process) on `port`; the management UI gets a port of its own.
        cmd = [node, str(ccr_cli), "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--no-open"]
        service = Service(
            "ccr", cmd, workdir / "ccr.log", cwd=workdir, env=ccr_env(home), stop_signal=signal.SIGTERM
        )
        launched = time.monotonic()

        def gateway_failure() -> str | None:
            # Its management service stays up when the gateway cannot start, and says why.
            m = re.search(r"^Failed to start gateway.*$", service.output(), re.M)
            return m.group(0) if m else None

        def wait_ccr(progress: Progress) -> None:
            wait_port(service, port, 60, progress, "starting ccr", failure=gateway_failure)
            progress.note(f"ccr serves after {time.monotonic() - launched:.1f} s of start-up")

        return service, ports, wait_ccr
    assert system == "litellm" and litellm_python is not None
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(fakes))  # JSON is YAML
    cmd = [
        str(litellm_python),
        "-m",
        "litellm.proxy.proxy_cli",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    service = Service(
        "litellm", cmd, workdir / "litellm.log", cwd=workdir, env=litellm_env(), stop_signal=signal.SIGTERM
    )
    launched = time.monotonic()

    def wait_litellm(progress: Progress) -> None:
        wait_port(
            service, port, 180, progress, "starting litellm", ready=lambda: http_get(port, "/health/liveliness") == 200
        )
        progress.note(f"litellm serves after {time.monotonic() - launched:.1f} s of start-up (1 uvicorn worker)")

    return service, ports, wait_litellm


# ---------------------------------------------------------------------------- report


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f} ms"
    if abs(v) >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def fmt_signed_ms(v: float) -> str:
    return ("+" if v >= 0 else "−") + fmt_ms(abs(v))


def fmt_ratio(v: float | None) -> str:
    if v is None or math.isnan(v) or math.isinf(v):
        return "—"
    return f"{v:.2f}x"


METRICS = (
    ("nonstream", "time", "small non-streaming request, 1 client: latency"),
    ("ttfb", "time", "{short}-event stream, 1 client: time to the first byte of the body (the first event)"),
    ("stream", "time", "{events}-event stream, 1 client: total time"),
    ("rps16", "rate", "16 concurrent clients, non-streaming: requests/s (p99 column: latency under that load)"),
    ("rps64", "rate", "64 concurrent clients, non-streaming: requests/s (p99 column: latency under that load)"),
    (
        "rss",
        "mem",
        "{streams} streams open at once: peak RSS of the proxy's processes (added: over idle, after warm-up)",
    ),
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
        local = by_key.get(t.local)
        if local is not None and local.status == "ok":
            for metric in SHARED_METRICS:
                r, lo = t.results.get(metric), local.results.get(metric)
                if not (r and lo):
                    continue
                if "added_median_ms" in r and lo.get("added_median_ms"):
                    r["over_local_ms"] = r["median_ms"] - lo["median_ms"]
                    r["added_x_local"] = r["added_median_ms"] / lo["added_median_ms"]
                elif r.get("rps") and lo.get("rps"):
                    r["x_local"] = r["rps"] / lo["rps"]
        first = by_key.get(t.first_attempt)
        if first is None or first.status != "ok":
            continue
        for metric in FAILOVER_METRICS:
            r, f = t.results.get(metric), first.results.get(metric)
            if r and f and r["median_ms"] is not None and f["median_ms"]:
                r["first_attempt_median_ms"] = f["median_ms"]
                r["over_first_attempt_ms"] = r["median_ms"] - f["median_ms"]
                r["x_first_attempt"] = r["median_ms"] / f["median_ms"]
    for t in targets:  # once every row has its added time
        peer = by_key.get(f"{CCR}.{t.key.split('.', 1)[1]}") if t.system == "cliproxy" else None
        if peer is None or peer.status != "ok":
            continue
        # cliproxy beside claude-code-router on the path both serve.
        for metric, kind, _ in METRICS:
            r, c = t.results.get(metric), peer.results.get(metric)
            if not (r and c):
                continue
            if kind == "time" and c.get("added_median_ms") and "added_median_ms" in r:
                r["added_x_ccr"] = r["added_median_ms"] / c["added_median_ms"]
            elif kind == "rate" and c["rps"]:
                r["x_ccr"] = r["rps"] / c["rps"]


def table(targets: list[Target], s: Settings) -> str:
    cols = ("target", "median", "p99", "added", "×direct", "×mitmdump", "added×mitm", "hooks", "")
    widths = (38, 10, 10, 11, 9, 10, 11, 9, 2)
    lines = []

    def row(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = "".join(f"{c:>{w}}" for c, w in zip(cells[1:-1], widths[1:-1], strict=True))
        return (first + rest + "  " + cells[-1]).rstrip()

    lines.append(row(cols))
    lines.append("─" * sum(widths))
    for metric, kind, title in METRICS:
        title = title.format(events=s.events, short=s.short_events, streams=s.open_streams)
        if metric == "rss":
            shown = [t for t in targets if "rss" in t.results or (t.status != "ok" and t.measure_rss)]
        else:
            shown = [t for t in targets if metric in t.results or (t.status != "ok" and t.takes(metric))]
        if not shown:
            continue
        lines.append(title)
        for t in shown:
            name = "  " + t.row_label
            if t.status != "ok":
                lines.append(f"{name:<{widths[0]}}  {t.status}")
                continue
            r = t.results[metric]
            notes = []
            if r.get("errors"):
                notes.append(f"{r['errors']} errors")
            if kind == "time":
                added = r.get("added_median_ms")
                cells = [
                    name,
                    fmt_ms(r["median_ms"]),
                    fmt_ms(r["p99_ms"]),
                    ("+" + fmt_ms(added)) if added is not None and t.system != "direct" else "—",
                    fmt_ratio(r.get("x_direct")),
                    fmt_ratio(r.get("x_mitmdump")),
                    fmt_ratio(r.get("added_x_mitmdump")) if t.system not in ("direct", "mitmdump") else "—",
                    fmt_ms(r.get("hooks_median_ms")) if "hooks_median_ms" in r else "—",
                ]
                if "added_x_ccr" in r:
                    notes.append(f"added {r['added_x_ccr']:.2f}x ccr's")
                if "added_x_local" in r:
                    notes.append(
                        f"{fmt_signed_ms(r['over_local_ms'])} over local state: added {r['added_x_local']:.2f}x local's"
                    )
                if "over_first_attempt_ms" in r:
                    notes.append(f"{fmt_signed_ms(r['over_first_attempt_ms'])} over the first attempt")
                if r["n"] < r.get("wanted", 0):
                    notes.append(f"n={r['n']} (time cap)")
            elif kind == "rate":
                cells = [
                    name,
                    f"{r['rps']:.0f}/s",
                    fmt_ms(r["p99_ms"]),
                    "—",
                    fmt_ratio(r.get("x_direct")),
                    fmt_ratio(r.get("x_mitmdump")),
                    "—",
                    "—",
                ]
                if "proxy_cpu_ms_per_request" in r:
                    cpu_note = f"proxy CPU {fmt_ms(r['proxy_cpu_ms_per_request'])}/request"
                    if "proxy_cpu_after_burst_ms_per_request" in r:
                        cpu_note += (
                            f" ({fmt_ms(r['proxy_cpu_after_burst_ms_per_request'])} of it in the "
                            f"{r['settle_seconds_max']:g} s after the burst"
                            + (", still busy then" if r["settle_capped"] else "")
                            + ")"
                        )
                    notes.append(cpu_note)
                if "x_local" in r:
                    notes.append(f"{r['x_local']:.2f}x local state's requests/s")
                if "x_ccr" in r:
                    notes.append(f"{r['x_ccr']:.2f}x ccr's requests/s")
            else:
                cells = [
                    name,
                    f"{r['peak_mb']:.0f} MB",
                    "—",
                    f"+{r['added_mb']:.0f} MB",
                    "—",
                    fmt_ratio(r.get("x_mitmdump")),
                    "—",
                    "—",
                ]
                if r["max_open_at_once"] < r["streams"]:
                    notes.append(f"only {r['max_open_at_once']} open at once after {s.open_timeout:g} s")
                else:
                    notes.append(f"all open after {r['seconds_to_open_all']:.1f} s")
            lines.append(row([*cells, ", ".join(notes)]))
    return "\n".join(lines)


def check_targets(targets: list[Target], latency_ms: float = 0.0, events: int = 500) -> list[dict[str, Any]]:
    """The issue's targets, each as measured (or n/a)."""
    by_key = {t.key: t for t in targets}
    out: list[dict[str, Any]] = []

    def get(key: str, metric: str) -> dict[str, Any] | None:
        t = by_key.get(key)
        return t.results.get(metric) if t and t.status == "ok" else None

    def reason(key: str) -> str:
        t = by_key.get(key)
        return t.status if t else "n/a (not in this run: --quick or --only left it out)"

    # The failover issue's bounds, then the performance issue's tighter ones on the same figures.
    for limit in (1.3, 1.1):
        for client in (OPENAI, ANTHROPIC):
            goal = f"pass-through added median latency ≤ {limit:g}x plain mitmdump's ({client})"
            r, m = get(f"cliproxy.{client}", "nonstream"), get(f"mitmdump.{client}", "nonstream")
            if r and m and "added_median_ms" in r and m.get("added_median_ms"):
                ratio = r["added_median_ms"] / m["added_median_ms"]
                out.append(
                    {
                        "target": goal,
                        "value": ratio,
                        "limit": limit,
                        "pass": ratio <= limit,
                        "detail": f"+{fmt_ms(r['added_median_ms'])} vs +{fmt_ms(m['added_median_ms'])} → {ratio:.2f}x",
                    }
                )
            else:
                out.append({"target": goal, "value": None, "pass": None, "detail": reason(f"cliproxy.{client}")})
    for limit in (1.5, 1.2):
        for client, upstream in ((OPENAI, ANTHROPIC), (ANTHROPIC, OPENAI)):
            key = f"cliproxy.{client}>{upstream}"
            goal = f"translated {client} → {upstream} stream total time within {limit:g}x of plain mitmdump's ({client})"
            r, m = get(key, "stream"), get(f"mitmdump.{client}", "stream")
            if r and m:
                ratio = r["median_ms"] / m["median_ms"]
                out.append(
                    {
                        "target": goal,
                        "value": ratio,
                        "limit": limit,
                        "pass": ratio <= limit,
                        "detail": f"{fmt_ms(r['median_ms'])} vs {fmt_ms(m['median_ms'])} → {ratio:.2f}x",
                    }
                )
            else:
                out.append({"target": goal, "value": None, "pass": None, "detail": reason(key)})
    for client in (OPENAI, ANTHROPIC):
        goal = f"addon's own time (x-cliproxy-overhead-ms) median ≤ {HOOKS_LIMIT_MS:g} ms on pass-through ({client})"
        r = get(f"cliproxy.{client}", "nonstream")
        if r and r.get("hooks_median_ms") is not None:
            own = r["hooks_median_ms"]
            out.append(
                {"target": goal, "value": own, "limit": HOOKS_LIMIT_MS, "pass": own <= HOOKS_LIMIT_MS, "detail": f"{own:.3f} ms"}
            )
        else:
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(f"cliproxy.{client}")})
    for client in (OPENAI, ANTHROPIC):
        goal = f"64 concurrent clients: requests/s ≥ plain mitmdump's ({client})"
        r, m = get(f"cliproxy.{client}", "rps64"), get(f"mitmdump.{client}", "rps64")
        if r and m and m.get("rps"):
            ratio = r["rps"] / m["rps"]
            out.append(
                {
                    "target": goal,
                    "value": ratio,
                    "limit": 1.0,
                    "pass": ratio >= 1.0,
                    "detail": f"{r['rps']:.0f}/s vs {m['rps']:.0f}/s → {ratio:.2f}x",
                }
            )
        else:
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(f"cliproxy.{client}")})
    for suffix, what in (
        (OPENAI, OPENAI),
        (ANTHROPIC, ANTHROPIC),
        (f"{OPENAI}>{ANTHROPIC}", f"{OPENAI} → {ANTHROPIC}"),
        (f"{ANTHROPIC}>{OPENAI}", f"{ANTHROPIC} → {OPENAI}"),
    ):
        goal = f"≥5x less added median latency than LiteLLM ({what})"
        r, lite = get(f"cliproxy.{suffix}", "nonstream"), get(f"litellm.{suffix}", "nonstream")
        if r and lite and r.get("added_median_ms") is not None and lite.get("added_median_ms") is not None:
            theirs, ours = lite["added_median_ms"], r["added_median_ms"]
            ratio = theirs / max(ours, 1e-3)
            out.append(
                {
                    "target": goal,
                    "value": ratio,
                    "limit": 5.0,
                    "pass": ratio >= 5,
                    "detail": f"LiteLLM +{fmt_ms(theirs)} vs +{fmt_ms(ours)} → {ratio:.2f}x less",
                }
            )
        else:
            missing = f"cliproxy.{suffix}" if not r else f"litellm.{suffix}"
            out.append({"target": goal, "value": None, "pass": None, "detail": reason(missing)})
    out += ccr_targets(get, reason, events)
    for t in targets:
        if t.system == "cliproxy" and t.measure_rss:
            goal = f"open streams under {RSS_LIMIT_MB} MB RSS ({t.label})"
            r = t.results.get("rss") if t.status == "ok" else None
            if r:
                out.append(
                    {
                        "target": goal,
                        "value": r["peak_mb"],
                        "limit": RSS_LIMIT_MB,
                        "pass": r["peak_mb"] < RSS_LIMIT_MB and r["max_open_at_once"] >= r["streams"],
                        "detail": f"{r['peak_mb']:.0f} MB peak with {r['max_open_at_once']} open at once",
                    }
                )
            else:
                out.append({"target": goal, "value": None, "pass": None, "detail": t.status})
    for t in targets:
        if t.system == FAILOVER:
            out.append(failover_target(t, by_key.get(t.first_attempt), latency_ms))
    return out


def ccr_targets(
    get: Callable[[str, str], dict[str, Any] | None], reason: Callable[[str], str], events: int
) -> list[dict[str, Any]]:
    """The targets against claude-code-router, on the one path it serves."""
    case = f"{ANTHROPIC}>{OPENAI}"
    what = f"{ANTHROPIC} → {OPENAI}"
    ours_key, ccr_key = f"cliproxy.{case}", f"{CCR}.{case}"
    out: list[dict[str, Any]] = []
    goal = f"≥2.5x less added median latency than claude-code-router ({what})"
    r, c = get(ours_key, "nonstream"), get(ccr_key, "nonstream")
    if r and c and r.get("added_median_ms") is not None and c.get("added_median_ms") is not None:
        theirs, ours = c["added_median_ms"], r["added_median_ms"]
        ratio = theirs / max(ours, 1e-3)
        out.append(
            {
                "target": goal,
                "value": ratio,
                "limit": 2.5,
                "pass": ratio >= 2.5,
                # (three decimals where two would round a miss up to the limit)
                "detail": f"claude-code-router +{fmt_ms(theirs)} vs +{fmt_ms(ours)} → "
                f"{ratio:.{3 if ratio < 2.5 <= round(ratio, 2) else 2}f}x less",
            }
        )
    else:
        out.append({"target": goal, "value": None, "pass": None, "detail": reason(ours_key if not r else ccr_key)})
    goal = f"translated {what} {events}-event stream: added total ≤ claude-code-router's"
    r, c = get(ours_key, "stream"), get(ccr_key, "stream")
    if r and c and r.get("added_median_ms") is not None and c.get("added_median_ms") is not None:
        theirs, ours = c["added_median_ms"], r["added_median_ms"]
        out.append(
            {
                "target": goal,
                "value": ours - theirs,
                "limit": 0.0,
                "pass": ours <= theirs,
                "detail": f"+{fmt_ms(ours)} vs claude-code-router +{fmt_ms(theirs)} ({fmt_signed_ms(ours - theirs)})",
            }
        )
    else:
        out.append({"target": goal, "value": None, "pass": None, "detail": reason(ours_key if not r else ccr_key)})
    return out


def failover_target(t: Target, first: Target | None, latency_ms: float) -> dict[str, Any]:
    """A failed-over stream's first byte against a first-attempt stream's, the fake's latency
    (the wait the failed attempt necessarily adds) taken off."""
    how = f"{t.client} → {t.upstream}" if t.translated else t.client
    goal = (
        f"failed-over stream's first byte within {FAILOVER_BOUND:g}x of a first-attempt stream's, "
        f"plus the fake's {latency_ms:g} ms latency for the extra attempt ({how})"
    )
    r = t.results.get("ttfb") if t.status == "ok" else None
    f = first.results.get("ttfb") if first and first.status == "ok" else None
    if not (r and f and r["median_ms"] is not None and f["median_ms"]):
        missing = t if not r else first
        why = missing.status if missing else "n/a (no first-attempt row in this run)"
        return {"target": goal, "value": None, "pass": None, "detail": why}
    check = t.results.get("failover_check")
    if not check or not check["ok"]:
        detail = (
            f"n/a ({check['failed_attempts']} failed attempts for {check['answered']} answered requests: "
            "not every request met the failing credential first)"
            if check
            else "n/a (the fakes did not say how many attempts they failed)"
        )
        return {"target": goal, "value": None, "pass": None, "detail": detail}
    ratio = (r["median_ms"] - latency_ms) / f["median_ms"]
    # A second wasted attempt would add the latency once more: this ratio.
    twice = (f["median_ms"] + latency_ms) / f["median_ms"]
    detail = f"({fmt_ms(r['median_ms'])} − {latency_ms:g} ms) vs {fmt_ms(f['median_ms'])} → {ratio:.2f}x"
    if twice > FAILOVER_BOUND:
        detail += f" (two wasted attempts would come to {twice:.2f}x)"
    else:
        # The bound tells one wasted attempt from two only while the first attempt takes less than
        # twice the latency: not so on a busy machine, or with a small --latency.
        detail += (
            f" (two wasted attempts would pass too here, {twice:.2f}x: the first attempt takes over twice the "
            "latency; raise --latency or use a quieter machine)"
        )
    return {
        "target": goal,
        "value": ratio,
        "limit": FAILOVER_BOUND,
        "pass": ratio <= FAILOVER_BOUND,
        "detail": detail,
        "why": (
            "failing over should cost one more upstream round trip and nothing else, which alone comes to about "
            f"1.0x; {FAILOVER_BOUND:g}x leaves the proxy room for its own work on the failed attempt, while a second "
            "wasted round trip or a wait (a backoff) would exceed it"
        ),
    }


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


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
        description="Measure cliproxy against a direct connection, plain mitmdump, LiteLLM and "
        "claude-code-router on a local fake upstream.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer requests, shorter phases, LiteLLM's pass-through rows only, no claude-code-router throughput "
        "rows (about a minute)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help="sequential non-stream requests per row (default 200, quick 24); each stream figure takes 30%% as many",
    )
    parser.add_argument(
        "--latency",
        type=float,
        metavar="MS",
        default=20.0,
        help="the fake upstream's fixed latency before every reply, in ms (default 20)",
    )
    parser.add_argument("--events", type=int, default=500, help="text deltas in the long stream (default 500)")
    parser.add_argument(
        "--json", metavar="PATH", help="where to write the results (default bench-results/bench-<timestamp>.json)"
    )
    parser.add_argument(
        "--python",
        metavar="PATH",
        help="the Python (or mitmdump) whose mitmdump to measure (default: .venv's), e.g. .venv312/bin/python",
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (its rows are n/a)")
    parser.add_argument(
        "--litellm-venv",
        metavar="DIR",
        default=str(CACHE / "litellm-venv"),
        help="LiteLLM's throwaway virtual environment, created on first use (default %(default)s)",
    )
    parser.add_argument(
        "--only",
        metavar="SYSTEMS",
        help="comma-separated subset of direct,mitmdump,cliproxy,litellm,ccr (direct and mitmdump are "
        "the baselines of the ratios; cliproxy brings its failover rows)",
    )
    parser.add_argument("--no-ccr", action="store_true", help="skip claude-code-router (its rows are n/a)")
    parser.add_argument(
        "--ccr-dir",
        metavar="DIR",
        default=str(CACHE / "ccr"),
        help=f"where claude-code-router {CCR_VERSION} is installed on first use (default %(default)s)",
    )
    parser.add_argument(
        "--shared-store",
        action="store_true",
        help="also measure cliproxy with its pool state in a redis-server on loopback (started in the work "
        "folder), under the local cliproxy rows, with the added time per request as a ratio to local state's",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs and process logs)")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="diagnostics: leave the systems not being measured running (by default they are SIGSTOPped)",
    )
    return parser.parse_args(argv)


def build_targets(systems: set[str], quick: bool = False, shared: bool = False) -> list[Target]:
    targets = []
    for system in ("direct", "mitmdump", "cliproxy", "litellm"):
        if system not in systems:
            continue
        for client in (OPENAI, ANTHROPIC):
            targets.append(
                Target(
                    f"{system}.{client}", system, client, client, measure_rss=system != "direct" and client == OPENAI
                )
            )
        # LiteLLM is slow enough to double a quick run: --quick measures its pass-through only.
        if system == "cliproxy" or (system == "litellm" and not quick):
            targets.append(Target(f"{system}.{OPENAI}>{ANTHROPIC}", system, OPENAI, ANTHROPIC, measure_rss=True))
            targets.append(Target(f"{system}.{ANTHROPIC}>{OPENAI}", system, ANTHROPIC, OPENAI))
    if CCR in systems:
        # The one path it serves: Anthropic clients, OpenAI-compatible upstreams. Its throughput
        # figures wait for its background work after each burst (5-10 s): not in a quick run.
        metrics = CCR_QUICK_METRICS if quick else None
        targets.append(Target(f"{CCR}.{ANTHROPIC}>{OPENAI}", CCR, ANTHROPIC, OPENAI, background=True, metrics=metrics))
    # The failover rows (the Anthropic upstream's, pass-through and translated), each right under
    # the first-attempt row it repeats.
    for first in [t for t in targets if t.system == "cliproxy" and t.upstream == ANTHROPIC]:
        _, case = first.key.split(".", 1)
        failover = Target(
            f"{FAILOVER}.{case}",
            FAILOVER,
            first.client,
            first.upstream,
            metrics=FAILOVER_METRICS,
            first_attempt=first.key,
        )
        targets.insert(targets.index(first) + 1, failover)
    if shared:
        for local in [t for t in targets if t.system == "cliproxy" and not t.translated]:
            row = Target(f"{SHARED}.{local.client}", SHARED, local.client, local.upstream, metrics=SHARED_METRICS, local=local.key)
            targets.insert(targets.index(local) + 1, row)
    for t in targets:
        t.model = OPENAI_MODEL if t.upstream == OPENAI else CLAUDE_MODEL
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings(latency_ms=args.latency, events=args.events)
    if args.quick:
        for k, v in QUICK.items():
            setattr(s, k, v)
    s.freeze = not args.no_freeze
    if args.requests:
        s.requests = args.requests
        s.streams = max(5, args.requests * 3 // 10)
    systems = {"direct", "mitmdump", "cliproxy", "litellm", CCR}
    if args.only:
        systems = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = systems - {"direct", "mitmdump", "cliproxy", "litellm", CCR}
        if unknown:
            print(f"scripts/bench: --only: unknown {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    mitmdump = mitmdump_path(args.python)
    if not mitmdump.exists():
        print(f"scripts/bench: no mitmdump at {mitmdump}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else ROOT / "bench-results" / f"bench-{stamp}.json"

    targets = build_targets(systems, args.quick, args.shared_store)
    progress = Progress(2 + 3 + len(Settings().concurrency))
    workdir = Path(tempfile.mkdtemp(prefix="cliproxy-bench-"))
    started = time.monotonic()
    notes: list[str] = []
    phase_seconds: dict[str, float] = {}
    load_before = load_average()
    cores = os.cpu_count() or 1
    if load_before is not None and load_before > 0.5 * cores:
        progress.note(
            f"warning: the machine is busy (load average {load_before:.1f} on {cores} cores); "
            "other processes will slow every target and make the figures noisy"
        )
    versions: dict[str, str] = {}
    fake_services: list[Service] = []
    failed_attempts: int | None = None

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        about = subprocess.run([str(mitmdump), "--version"], capture_output=True, text=True).stdout
        for key, label in (("mitmproxy", "Mitmproxy:"), ("mitmdump_python", "Python:")):
            if m := re.search(rf"^{label}\s*(\S+)", about, re.M):
                versions[key] = m.group(1)
        litellm_python: Path | None = None
        if "litellm" in systems:
            why = "--no-litellm"
            if not args.no_litellm:
                litellm_python, why = ensure_litellm(Path(args.litellm_venv).expanduser(), progress)
            if litellm_python is None:
                progress.note(f"LiteLLM rows are n/a: {why}")
                notes.append(f"LiteLLM not measured: {why}")
                for t in targets:
                    if t.system == "litellm":
                        t.status = (
                            "n/a (--no-litellm)" if args.no_litellm else "n/a (LiteLLM not installed; see the notes)"
                        )
            else:
                versions["litellm"] = why
        ccr_cli: Path | None = None
        if CCR in systems:
            why = "--no-ccr"
            if not args.no_ccr:
                ccr_cli, why = ensure_ccr(Path(args.ccr_dir).expanduser(), progress)
            if ccr_cli is None:
                progress.note(f"claude-code-router rows are n/a: {why}")
                notes.append(f"claude-code-router not measured: {why}")
                for t in targets:
                    if t.system == CCR:
                        t.status = "n/a (--no-ccr)" if args.no_ccr else f"n/a ({why})"
            else:
                versions["ccr"] = why
                node = subprocess.run([shutil.which("node") or "node", "--version"], capture_output=True, text=True)
                versions["ccr_node"] = node.stdout.strip().lstrip("v") or "?"

        progress.status("starting the fake upstreams", force=True)
        shapes = {
            "long": (s.events, 0.0),
            "short": (s.short_events, s.short_delay),
            "slow": (s.slow_events, s.slow_delay),
        }
        fakes: dict[str, str] = {}
        failing = (FAILING_KEY,) if any(t.system == FAILOVER for t in targets) else ()
        for variant, (events, delay) in shapes.items():
            svc, fakes[variant] = start_fake(
                sys.executable, workdir, f"fake-{variant}", s.latency_ms / 1000, events, delay, failing
            )
            fake_services.append(svc)
            progress.note(
                f"fake upstream ({variant} streams) {fakes[variant]}: {s.latency_ms:g} ms latency, {events} events"
                f"{f' {delay * 1000:g} ms apart' if delay else ''}, pid {svc.pid}"
                + (f", {FAILOVER_STATUS} to the failover rows' first credential" if failing else "")
            )
        confdir = workdir / "mitmproxy-conf"
        confdir.mkdir()
        services: dict[str, Service] = {}
        # Launched together (LiteLLM, the slowest to start, first), then waited for in turn.
        launched = {}
        for system in ("litellm", CCR, "direct", "mitmdump", "cliproxy", FAILOVER, SHARED):
            if any(t.system == system and t.status == "ok" for t in targets):
                launched[system] = launch_system(system, mitmdump, confdir, workdir, fakes, litellm_python, ccr_cli)
        for system in ("direct", "mitmdump", "cliproxy", FAILOVER, SHARED, CCR, "litellm"):
            if system not in launched:
                continue
            rows = [t for t in targets if t.system == system and t.status == "ok"]
            service, ports, wait = launched[system]
            try:
                wait(progress)
            except SetupError as e:
                if service is not None:
                    service.stop()
                progress.note(f"{system} did not start: {str(e).splitlines()[0]}")
                notes.append(f"{system} did not start: {e}")
                for t in rows:
                    t.status = f"n/a ({system} did not start; see the notes)"
                continue
            if service is not None:
                services[system] = service
                env = " ".join(f"{k}={v}" for k, v in RUN_ENV.items()) + " " if system in ("cliproxy", FAILOVER, SHARED) else ""
                notes.append(f"{system}: {env}{' '.join(service.cmd)}")
                progress.note(f"{system} ready (pid {service.pid})")
            for t in rows:
                t.ports = ports
                if service is not None:
                    t.pids = lambda pid=service.pid: descendants(pid)
                if system == CCR:
                    t.pending = lambda home=ccr_home(workdir): ccr_pending(home)

        runner = Runner(s, progress, targets, services)
        asyncio.run(runner.run())
        phase_seconds = runner.phase_seconds
        for system, service in services.items():
            if not service.alive():
                notes.append(f"{system} exited during the run with {service.proc.returncode}:\n{service.output()}")
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
        counts = [fake_failures(svc) for svc in fake_services]  # said on exit, so read once stopped
        if counts and None not in counts:
            failed_attempts = sum(n for n in counts if n is not None)
        if args.keep:
            print(f"scripts/bench: work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    load_after = load_average()
    failover_rows = [t for t in targets if t.system == FAILOVER and t.status == "ok"]
    if failover_rows:
        # Every request the failover cliproxy answered should have met the failing credential first.
        answered = ANSWERED.get(failover_rows[0].port, 0)
        check = {
            "failed_attempts": failed_attempts,
            "answered": answered,
            "ok": failed_attempts is not None and failed_attempts >= answered > 0,
        }
        for t in failover_rows:
            t.results["failover_check"] = check
        notes.append(f"{FAILOVER}: {failed_attempts} attempts failed with {FAILOVER_STATUS} for {answered} answers")
    derive(targets)
    goals = check_targets(targets, s.latency_ms, s.events)
    print()
    git = git_info()
    print(
        f"cliproxy benchmark — {datetime.datetime.now():%Y-%m-%d %H:%M}, commit {(git['commit'] or '?')[:10]}"
        f"{' (uncommitted changes)' if git['dirty'] else ''}, "
        f"mitmproxy {versions.get('mitmproxy', '?')} on Python {versions.get('mitmdump_python', '?')}, "
        f"client on Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    print(
        f"fake upstream: {s.latency_ms:g} ms latency; {s.requests} non-stream requests and {s.streams} "
        f"{s.events}-event streams per row, {s.rps_seconds:g} s per throughput phase."
    )
    print(
        "Both mitmdumps run with termlog_verbosity=warn and flow_detail=0 (no per-flow console output); "
        "plain mitmdump also with connection_strategy=lazy and stream_large_bodies=1 (as cliproxy: dial on "
        "the first request, relay bodies as they arrive)."
        + (
            f" LiteLLM {versions['litellm']}: 1 uvicorn worker, no master key, LITELLM_LOG=ERROR."
            if "litellm" in versions
            else ""
        )
        + (
            f" claude-code-router {versions['ccr']} on Node {versions['ccr_node']}: `ccr serve` as installed "
            "(request log and raw traces on), client key checked; its CPU counts every process of its tree until "
            "they are quiet and its request log is stored, after each burst"
            + (
                ", and each of its latency batches starts then."
                if s.settle_batches
                else " (--quick: not before its latency batches, and no throughput rows for it)."
            )
            if "ccr" in versions
            else ""
        )
    )
    print(
        "added = median (p99 for p99) minus the direct connection's, for the client's format; ×direct and ×mitmdump = "
        "median ÷ theirs (rps: throughput ratio); added×mitm = added ÷ plain mitmdump's added; hooks = median "
        "x-cliproxy-overhead-ms (time in the addon's own hooks). Translated rows compare with the client's format."
    )
    if failover_rows:
        check = failover_rows[0].results["failover_check"]
        print(
            "↳ failed over (cooling off) = the row above, on a second cliproxy whose config adds, above each "
            f"claude-api-key, a higher-priority one the fake answers with {FAILOVER_STATUS} (no Retry-After), and sets "
            "disable-cooling: true: every request tries that credential first and fails over, and its time includes "
            f"the failed attempt (the fakes failed {check['failed_attempts']} attempts; that cliproxy answered "
            f"{check['answered']} requests"
            + (")." if check["ok"] else "): NOT every request failed over, so these rows do not measure a failover.")
        )
    print()
    print(table(targets, s))
    compared = [t for t in targets if t.system == SHARED and "added_x_local" in t.results.get("nonstream", {})]
    if compared:
        print(
            "\nShared state store (Redis on loopback) against local state, per non-streaming request: "
            + "; ".join(
                f"{t.client} {fmt_signed_ms(r['over_local_ms'])}, added time {r['added_x_local']:.2f}x local's"
                for t in compared
                for r in (t.results["nonstream"],)
            )
        )
    print()
    print("Targets:")
    said = ""
    for g in goals:
        verdict = "n/a " if g["pass"] is None else ("PASS" if g["pass"] else "FAIL")
        print(f"  [{verdict}] {g['target']}: {g['detail']}")
        if g.get("why") and g["why"] != said:
            print(f"         ({g['why']})")
            said = g["why"]
    busy = max(x for x in (load_before, load_after, 0.0) if x is not None)
    print(
        f"\n(total run time {elapsed:.0f} s; load average {load_before} before, {load_after} after"
        + (
            " (this run's own load included): the machine was shared, absolute figures are pessimistic"
            if busy > cores + 1
            else ""
        )
        + ")"
    )

    report = {
        "schema": 1,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "versions": {"client_python": platform.python_version(), **versions},
        "mitmdump": str(mitmdump),
        "settings": {
            "latency_ms": s.latency_ms,
            "requests": s.requests,
            "streams": s.streams,
            "events": s.events,
            "rps_seconds": s.rps_seconds,
            "rps_warmup_seconds": s.rps_warm,
            "concurrency": list(s.concurrency),
            "open_streams": s.open_streams,
            "open_hold_seconds": s.open_hold,
            "warmup_requests": s.warmup,
            "freeze_others": s.freeze,
            "time_cap_seconds": s.cap,
            "quick": args.quick,
            "failover": {
                "first_credential_status": FAILOVER_STATUS,
                "retry_after": None,
                "disable_cooling": True,
                "metrics": sorted(FAILOVER_METRICS),
                "bound_x_first_attempt_plus_latency": FAILOVER_BOUND,
            },
        },
        "elapsed_seconds": round(elapsed, 1),
        "phase_seconds": phase_seconds,
        "rows": [
            {
                "key": t.key,
                "label": t.label,
                "system": t.system,
                "client": t.client,
                "upstream": t.upstream,
                "status": t.status,
                "results": t.results,
            }
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
