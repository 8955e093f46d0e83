"""Wire-level invariants of a client stream, per format: what a strict client relies on."""

from __future__ import annotations

import json
from typing import Any

from translators.formats import Format
from translators.sse import SSEReader


class StreamViolation(AssertionError):
    pass


def _frames(data: bytes) -> list[tuple[str, str]]:
    reader = SSEReader()
    events = reader.feed(data) + reader.close()
    return [(e.event, e.data) for e in events]


def check_stream(fmt: Format, data: bytes, *, sse: bool = True) -> list[Any]:
    """Raise `StreamViolation` unless `data` is a well-formed `fmt` stream; returns its payloads."""
    if fmt is Format.GEMINI and not sse:
        payloads = json.loads(data)
        if not isinstance(payloads, list):
            raise StreamViolation("a Gemini array stream must be one JSON array")
        _check_gemini(payloads)
        return payloads
    frames = _frames(data)
    if not frames:
        raise StreamViolation("empty stream")
    done = [i for i, (_, d) in enumerate(frames) if d == "[DONE]"]
    if fmt is Format.OPENAI_CHAT:
        if done != [len(frames) - 1]:
            raise StreamViolation(f"chat streams end with exactly one [DONE], last; got at {done}")
        frames = frames[:-1]
    elif done:
        raise StreamViolation(f"{fmt.value} streams have no [DONE]")
    payloads = [json.loads(d) for _, d in frames]
    {
        Format.OPENAI_CHAT: _check_chat,
        Format.OPENAI_RESPONSES: _check_responses,
        Format.ANTHROPIC: _check_anthropic,
        Format.GEMINI: _check_gemini,
    }[fmt](payloads, *([frames] if fmt in (Format.ANTHROPIC, Format.OPENAI_RESPONSES) else []))
    return payloads


def _check_anthropic(payloads: list[dict], frames: list[tuple[str, str]]) -> None:
    for (event, _), p in zip(frames, payloads):
        if event != p["type"]:
            raise StreamViolation(f"event line {event!r} differs from data.type {p['type']!r}")
    types = [p["type"] for p in payloads if p["type"] != "ping"]
    if types[0] != "message_start":
        raise StreamViolation("message_start must come first")
    if types[-1] not in ("message_stop", "error") or types.count("message_stop") + types.count("error") != 1:
        raise StreamViolation(f"exactly one terminal event, last: {types}")
    open_index, next_index = None, 0
    for p in payloads:
        kind = p["type"]
        if kind == "content_block_start":
            if open_index is not None:
                raise StreamViolation("a block started while another is open")
            if p["index"] != next_index:
                raise StreamViolation(f"block index {p['index']}, expected {next_index}")
            open_index, next_index = p["index"], next_index + 1
        elif kind == "content_block_delta":
            if p["index"] != open_index:
                raise StreamViolation(f"delta for block {p['index']} while {open_index} is open")
        elif kind == "content_block_stop":
            if p["index"] != open_index:
                raise StreamViolation(f"stop for block {p['index']} while {open_index} is open")
            open_index = None
        elif kind in ("message_delta", "message_stop") and open_index is not None:
            raise StreamViolation(f"{kind} while block {open_index} is open")


def _check_chat(payloads: list[dict]) -> None:
    finishes = 0
    seen_tools: list[int] = []
    for p in payloads:
        if "error" in p:
            continue
        if p.get("object") != "chat.completion.chunk":
            raise StreamViolation(f"not a chat.completion.chunk: {p}")
        for choice in p["choices"]:
            if choice.get("finish_reason"):
                finishes += 1
            for call in (choice.get("delta") or {}).get("tool_calls") or ():
                index = call["index"]
                if index not in seen_tools:
                    if seen_tools and index != seen_tools[-1] + 1:
                        raise StreamViolation(f"tool call index {index} after {seen_tools}")
                    named = call.get("function") or call.get("custom") or {}  # custom tools' calls
                    if not call.get("id") or not named.get("name"):
                        raise StreamViolation("a tool call's first fragment carries its id and name")
                    seen_tools.append(index)
                elif index != seen_tools[-1]:
                    raise StreamViolation("tool call fragments interleave")
    if finishes != 1 and not any("error" in p for p in payloads):
        raise StreamViolation(f"exactly one finish_reason expected, got {finishes}")


def _check_responses(payloads: list[dict], frames: list[tuple[str, str]]) -> None:
    for (event, _), p in zip(frames, payloads):
        if event and event != p["type"]:
            raise StreamViolation(f"event line {event!r} differs from data.type {p['type']!r}")
    numbers = [p["sequence_number"] for p in payloads]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise StreamViolation(f"sequence_number not consecutive: {numbers}")
    types = [p["type"] for p in payloads]
    if types[0] != "response.created":
        raise StreamViolation("response.created must come first")
    terminal = ("response.completed", "response.incomplete", "response.failed")
    if types[-1] not in terminal or sum(t in terminal for t in types) != 1:
        raise StreamViolation(f"exactly one terminal event, last: {types}")
    added: set[int] = set()
    done: set[int] = set()
    for p in payloads:
        index = p.get("output_index")
        if p["type"] == "response.output_item.added":
            if index in added or (added and index != max(added) + 1):
                raise StreamViolation(f"output_index {index} not the next one")
            added.add(index)
        elif p["type"] == "response.output_item.done":
            if index not in added or index in done:
                raise StreamViolation(f"output item {index} done twice or never added")
            done.add(index)
        elif index is not None and (index not in added or index in done):
            raise StreamViolation(f"{p['type']} for output item {index} outside its lifetime")
    if added != done:
        raise StreamViolation(f"items never finished: {added - done}")


def _check_gemini(payloads: list[dict]) -> None:
    if any("error" in p for p in payloads):
        return
    finishing = [i for i, p in enumerate(payloads) if any(c.get("finishReason") for c in p.get("candidates", ()))]
    if finishing != [len(payloads) - 1]:
        raise StreamViolation(f"finishReason only on the last chunk; got on {finishing} of {len(payloads)}")
