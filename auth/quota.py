"""Quota, as vendors report it in the response headers they already send.

No request is spent on finding out: every upstream answer (success or failure) is read for its
rate-limit headers, and the pool acts on the latest snapshot per credential (a window reported
exhausted rests the credential until it resets; a nearly used-up one is picked last).

Header families read (names lower-case; values are hostile input, anything unreadable skipped):

* Anthropic subscription logins (Claude Pro/Max), undocumented but stable:
  `anthropic-ratelimit-unified-status` (allowed, allowed_warning, rejected), `-reset`,
  `-representative-claim` (five_hour, seven_day, ...), and per window (`5h`, `7d`, and
  model-scoped ones such as `7d_oi`): `-{w}-utilization` (fraction 0..1), `-{w}-reset` (epoch
  seconds), `-{w}-status`. The `overage` window (paid extra usage) never counts as exhausted:
  "rejected" there only says no extra usage is bought.
* Anthropic API keys (documented): `anthropic-ratelimit-{requests,tokens,input-tokens,
  output-tokens}-{limit,remaining,reset}`, resets in RFC 3339.
* OpenAI API keys (documented): `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
  as Go durations (`6m0s`, `1s`, `20ms`).
* Codex (ChatGPT logins), as the Codex CLI reads them (codex-rs `parse_rate_limit_for_limit`):
  `x-codex-{primary,secondary}-used-percent` (0..100), `-window-minutes`, `-reset-at` (epoch
  seconds; `-resets-at` accepted too) or the older `-reset-after-seconds`.
* Gemini (API keys and Code Assist) sends no quota headers on success; its 429s carry a
  `RetryInfo` in the body, which the failover path already honours.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

# A reset further away than this is not a window any vendor has: garbage, or the wrong unit.
MAX_RESET_AHEAD = 35 * 86400.0
# Past resets are kept (the window has simply reset since); older ones are garbage.
MAX_RESET_BEHIND = 86400.0
# Utilization slightly over 1 is real (Anthropic reports 1.02); far over it is the wrong unit.
_MAX_FRACTION = 2.0
_MAX_COUNT = 10**15
_EXHAUSTED = frozenset({"rejected", "exceeded", "blocked"})

_UNIFIED = "anthropic-ratelimit-unified-"
_UNIFIED_FIELDS = ("utilization", "reset", "status")
# Windows of the unified family that are not a limit on what the credential may still serve.
_UNIFIED_IGNORED = frozenset({"overage", "fallback"})
_CLAIMS = {"five_hour": "5h", "seven_day": "7d"}
# (window, its limit, remaining and reset header names)
_ANTHROPIC_LIMITS = tuple(
    (kind, *(f"anthropic-ratelimit-{kind}-{field}" for field in ("limit", "remaining", "reset")))
    for kind in ("requests", "tokens", "input-tokens", "output-tokens")
)
_OPENAI_LIMITS = tuple(
    (kind, *(f"x-ratelimit-{field}-{kind}" for field in ("limit", "remaining", "reset")))
    for kind in ("requests", "tokens")
)
_CODEX_WINDOWS = ("primary", "secondary")
# One probe per family: the cheap test every upstream answer goes through.
_PROBES = (
    ("anthropic-ratelimit-unified-status", "unified"),
    ("anthropic-ratelimit-unified-5h-utilization", "unified"),
    ("anthropic-ratelimit-unified-7d-utilization", "unified"),
    ("anthropic-ratelimit-requests-remaining", "anthropic"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic"),
    ("x-ratelimit-remaining-requests", "openai"),
    ("x-ratelimit-remaining-tokens", "openai"),
    ("x-codex-primary-used-percent", "chatgpt"),
    ("x-codex-secondary-used-percent", "chatgpt"),
)
_DURATION_PART = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # "5h", "7d", "requests", "tokens", "input-tokens", "output-tokens", "primary", ...
    used: float | None  # fraction 0..1 of the window used, when known
    remaining: int | None
    limit: int | None
    resets_at: float | None  # epoch seconds
    status: str | None  # "allowed", "allowed_warning", "rejected", ...

    @property
    def exhausted(self) -> bool:
        return (
            (self.status is not None and self.status in _EXHAUSTED)
            or (self.used is not None and self.used >= 1.0)
            or self.remaining == 0
        )

    @property
    def fraction_used(self) -> float | None:
        if self.used is not None:
            return self.used
        if self.remaining is not None and self.limit:
            return max(0.0, 1.0 - self.remaining / self.limit)
        return None


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    observed_at: float  # epoch seconds
    windows: tuple[Window, ...]

    def exhausted_until(self) -> float | None:
        """When the last window reported exhausted resets (epoch seconds); None when none is,
        or when an exhausted window did not say when it resets."""
        until = None
        for w in self.windows:
            if w.resets_at is not None and w.exhausted:
                until = w.resets_at if until is None else max(until, w.resets_at)
        return until

    def exhausted_window(self) -> Window | None:
        """The exhausted window that resets last (the one keeping the credential out longest)."""
        found = None
        for w in self.windows:
            if w.resets_at is not None and w.exhausted and (found is None or w.resets_at > found.resets_at):
                found = w
        return found

    def headroom(self) -> float | None:
        """1 - the largest fraction used over the windows that report one; None if none does."""
        most = None
        for w in self.windows:
            if (used := w.fraction_used) is not None:
                most = used if most is None else max(most, used)
        return None if most is None else max(0.0, 1.0 - most)


def parse_quota(headers: Mapping[str, str], now: float) -> QuotaSnapshot | None:
    """The quota `headers` report, or None when they carry no rate-limit header. Never raises.

    `headers` answers `get` by lower-case name (a dict of lower-cased names, or a
    case-insensitive multidict such as aiohttp's)."""
    get = headers.get
    families = {family for name, family in _PROBES if get(name) is not None}
    if not families:
        return None
    windows: list[Window] = []
    try:
        if "unified" in families:
            windows += _unified(headers, now)
        if "anthropic" in families:
            windows += _counted(headers, _ANTHROPIC_LIMITS, _rfc3339, now)
        if "openai" in families:
            windows += _counted(headers, _OPENAI_LIMITS, _duration, now)
        if "chatgpt" in families:  # the Codex backend's x-codex-* windows
            windows += _codex(headers, now)
    except Exception:  # noqa: BLE001 - hostile input must never fail the request it came with
        return None
    return QuotaSnapshot(now, tuple(windows)) if windows else None


def _unified(headers: Mapping[str, str], now: float) -> list[Window]:
    fields: dict[str, dict[str, str]] = {}
    for name in headers:
        lower = name.lower()
        if not lower.startswith(_UNIFIED):
            continue
        rest = lower[len(_UNIFIED) :]
        window, _, field = rest.rpartition("-")
        if field in _UNIFIED_FIELDS and window not in _UNIFIED_IGNORED:
            fields.setdefault(window, {})[field] = headers[name]
    windows: dict[str, Window] = {}
    for name, values in fields.items():
        if not name or len(name) > 32:
            continue
        windows[name] = Window(
            name,
            _fraction(values.get("utilization")),
            None,
            None,
            _epoch(values.get("reset"), now),
            _status(values.get("status")),
        )
    overall = fields.get("", {})
    status = _status(overall.get("status"))
    if status is not None:
        resets = _epoch(overall.get("reset"), now)
        claim = _CLAIMS.get((headers.get(_UNIFIED + "representative-claim") or "").strip().lower())
        if resets is None and claim in windows:
            resets = windows[claim].resets_at
        windows["unified"] = Window("unified", None, None, None, resets, status)
    return list(windows.values())


def _counted(headers: Mapping[str, str], limits: tuple[tuple[str, str, str, str], ...], reset, now: float) -> list[Window]:
    windows = []
    get = headers.get
    for kind, limit_name, remaining_name, reset_name in limits:
        remaining = _count(get(remaining_name))
        limit = _count(get(limit_name))
        if remaining is None and limit is None:
            continue
        if remaining is not None and limit is not None and remaining > limit:
            remaining = None  # contradicts itself: the limit is the safer half to believe
        resets = reset(get(reset_name), now)
        windows.append(Window(kind, None, remaining, limit, resets, None))
    return windows


def _codex(headers: Mapping[str, str], now: float) -> list[Window]:
    windows = []
    for name in _CODEX_WINDOWS:
        prefix = f"x-codex-{name}-"
        percent = _number(headers.get(prefix + "used-percent"))
        used = percent / 100 if percent is not None and 0 <= percent <= 100 * _MAX_FRACTION else None
        resets = _epoch(headers.get(prefix + "reset-at") or headers.get(prefix + "resets-at"), now)
        if resets is None:
            after = _number(headers.get(prefix + "reset-after-seconds"))
            if after is not None and 0 <= after <= MAX_RESET_AHEAD:
                resets = now + after
        if used is not None or resets is not None:
            windows.append(Window(name, used, None, None, resets, None))
    return windows


# -- values -----------------------------------------------------------------------------------


def _number(value: str | None) -> float | None:
    if value is None or len(value) > 40:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _fraction(value: str | None) -> float | None:
    number = _number(value)
    return number if number is not None and 0.0 <= number <= _MAX_FRACTION else None


def _count(value: str | None) -> int | None:
    number = _number(value)
    if number is None or number < 0 or number > _MAX_COUNT or not number.is_integer():
        return None
    return int(number)


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value if 0 < len(value) <= 32 and value.replace("_", "").isalpha() else None


def _plausible(resets: float, now: float) -> float | None:
    return resets if now - MAX_RESET_BEHIND <= resets <= now + MAX_RESET_AHEAD else None


def _epoch(value: str | None, now: float) -> float | None:
    number = _number(value)
    if number is None or number <= 0:
        return None
    if number > 1e11:  # milliseconds, not seconds
        number /= 1000
    return _plausible(number, now)


def _rfc3339(value: str | None, now: float) -> float | None:
    if value is None or len(value) > 40:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # no zone: no telling when that is
    return _plausible(moment.timestamp(), now)


def _duration(value: str | None, now: float) -> float | None:
    if value is None or len(value) > 40:
        return None
    text = value.strip()
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return now + total if total <= MAX_RESET_AHEAD else None


class QuotaBook:
    """The latest quota snapshot per credential id."""

    def __init__(self) -> None:
        self._snapshots: dict[str, QuotaSnapshot] = {}
        # Told of every snapshot an upstream answer gave (the state store shares them).
        self.observer: Callable[[str, QuotaSnapshot], None] | None = None

    def observe(
        self, credential_id: str, headers: Mapping[str, str], now: float | None = None
    ) -> QuotaSnapshot | None:
        """Read `headers` (an upstream answer's); the snapshot they report, now the
        credential's, or None (and the previous snapshot kept) when they report none."""
        snapshot = parse_quota(headers, time.time() if now is None else now)
        if snapshot is not None:
            self._snapshots[credential_id] = snapshot
            if self.observer is not None:
                self.observer(credential_id, snapshot)
        return snapshot

    def adopt(self, credential_id: str, snapshot: QuotaSnapshot) -> None:
        """A snapshot another instance took; kept unless this book's is newer."""
        current = self._snapshots.get(credential_id)
        if current is None or current.observed_at < snapshot.observed_at:
            self._snapshots[credential_id] = snapshot

    def get(self, credential_id: str) -> QuotaSnapshot | None:
        return self._snapshots.get(credential_id)

    def all(self) -> dict[str, QuotaSnapshot]:
        return dict(self._snapshots)

    def forget(self, keep_ids: set[str]) -> None:
        self._snapshots = {k: v for k, v in self._snapshots.items() if k in keep_ids}
