#!/usr/bin/env python3
"""Per-event cost of translating a stream, in process: for every upstream -> client pair, a
500-event text stream fed through `StreamTranslator` one upstream event per chunk, as the
network delivers it; the figure is the text deltas' steady state (best 50-event window).

Absolute microseconds on a shared machine are noise, so the rounds alternate with a fixed
yardstick defined here (a minimal pass-through: split the SSE lines, `json.loads` the data,
write it back with `json.dumps`) and every pair is also printed as a multiple of it.
`--against REV` times the translators of git revision REV in the same invocation, in worker
processes interleaved with this checkout's, and prints after/before of those multiples.

    .venv/bin/python scripts/bench_stream.py                 # this checkout
    .venv/bin/python scripts/bench_stream.py --against main  # before/after

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 500
FORMATS = ("openai-chat", "openai-responses", "anthropic", "gemini")
SHORT = {"openai-chat": "chat", "openai-responses": "responses", "anthropic": "anthropic", "gemini": "gemini"}

# Token-sized pieces, as models stream them, with the odd quote, newline and non-ASCII letter.
WORDS = (" The", " quick", " brown", " fox", ' "jumps"', " over", " the", " lazy", " dog.", "\n", " Café", " naïve", " 1,024", " tokens", " €5", " well")


def _yardstick(chunks: list[bytes]) -> None:
    dumps, loads = json.dumps, json.loads
    for chunk in chunks:
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {"):
                dumps(loads(line[6:]))


# Timed in windows of this many events, the best window kept: a window (well under a
# millisecond) that the scheduler or a neighbour's burst did not touch is easy to find on a busy
# machine, a whole stream much less so.
WINDOW = 50


def _best_window(step, chunks: list[bytes]) -> float:
    best = float("inf")
    clock = time.perf_counter
    for at in range(0, len(chunks) - WINDOW + 1, WINDOW):
        window = chunks[at : at + WINDOW]
        start = clock()
        for chunk in window:
            step(chunk)
        best = min(best, clock() - start)
    return best / WINDOW


def _stream(upstream, request) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The upstream's bytes for a 500-event text stream, one chunk per upstream event: those
    before the text, the text deltas, those after."""
    from translators.canonical import BlockStart, BlockStop, Delta, Finish, Start, StopReason, Usage
    from translators.codec import codec

    encoder = codec(upstream).stream_encoder(request, True)

    def encode(events) -> list[bytes]:
        return [chunk for chunk in map(encoder.encode, events) if chunk]

    head = encode([Start(id="resp_bench", model=request.model, created=1700000000), BlockStart(0, "text")])
    deltas = encode([Delta(0, text=WORDS[i % len(WORDS)]) for i in range(EVENTS)])
    tail = encode([BlockStop(0), Finish(StopReason.END, usage=Usage(input_tokens=12, output_tokens=EVENTS))])
    return head, deltas, [*tail, encoder.close()]


def worker(rounds: int) -> dict[str, tuple[float, float]]:
    """Per pair: microseconds per text event in the steady state of the stream, and the same as
    a multiple of the yardstick timed in the rounds between (so that the machine's speed at
    that moment cancels out); with the `translators` on sys.path."""
    from translators.canonical import Request
    from translators.formats import Format
    from translators.translate import StreamTranslator

    request = Request(model="bench-model", stream=True, stream_usage=True)
    chat_deltas = _stream(Format.OPENAI_CHAT, request)[1]
    results: dict[str, tuple[float, float]] = {}
    for up in FORMATS:
        head, deltas, tail = _stream(Format(up), request)
        for client in FORMATS:
            if client == up:
                continue
            best = yardstick = float("inf")
            for _ in range(rounds):
                yardstick = min(yardstick, _best_window(lambda c: _yardstick((c,)), chat_deltas))
                translate = StreamTranslator(Format(up), Format(client), request)
                # The start of the stream, its text deltas (timed), its end.
                for chunk in head:
                    translate(chunk)
                best = min(best, _best_window(translate, deltas))
                for chunk in tail:
                    translate(chunk)
                translate(b"")
            results[f"{up}>{client}"] = (best * 1e6, best / yardstick)
    return results


def _run_worker(tree: Path, rounds: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(tree), "--rounds", str(rounds)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def _merge(best, new):
    return new if best is None else {k: min(best[k], new[k], key=lambda v: v[1]) for k in new}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also time the translators of this git revision")
    parser.add_argument("--runs", type=int, default=5, help="interleaved worker processes per tree")
    parser.add_argument("--rounds", type=int, default=10, help="streams per pair in each worker (best kept)")
    parser.add_argument("--worker", metavar="TREE", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        sys.path.insert(0, args.worker)
        print(json.dumps(worker(args.rounds)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as scratch:
        trees = {"now": ROOT}
        if args.against:
            before = Path(scratch) / "before"
            before.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.against, "translators"], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
            trees = {"before": before, "now": ROOT}
        best: dict = dict.fromkeys(trees)
        for _ in range(args.runs):
            for name, tree in trees.items():
                best[name] = _merge(best[name], _run_worker(tree, args.rounds))

    now, before_results = best["now"], best.get("before")
    print(f"{EVENTS}-event text stream, one upstream event per chunk; best {WINDOW}-event window of {args.runs}x{args.rounds} streams")
    header = f"{'upstream > client':<26}{'us/event':>9}{'x yardstick':>12}"
    if before_results:
        header += f"{'before us':>11}{'before x':>10}{'after/before':>14}"
    print(header)
    ratios = []
    for key, (us, times) in now.items():
        up, client = key.split(">")
        line = f"{SHORT[up] + ' > ' + SHORT[client]:<26}{us:>9.2f}{times:>12.3f}"
        if before_results:
            before_us, before_times = before_results[key]
            ratios.append(times / before_times)
            line += f"{before_us:>11.2f}{before_times:>10.3f}{times / before_times:>14.2f}"
        print(line)
    if ratios:
        ratios.sort()
        print(f"after/before (each against its own yardstick): median {ratios[len(ratios) // 2]:.2f}, worst {ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
