"""Credential selection and cooldown.

The pool knows nothing about HTTP or formats: callers hand it the candidates that can serve a
model, it picks one by priority tier and strategy, and it remembers upstream failures per
(credential, model) so that an exhausted credential is skipped before the next dispatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from auth.credential import Credential

Strategy = Literal["round-robin", "fill-first"]

QUOTA_BACKOFF_BASE = 1.0
QUOTA_BACKOFF_CAP = 30 * 60.0
AUTH_FAILURE_COOLDOWN = 30 * 60.0
MAX_CURSORS = 4096


@dataclass(slots=True)
class Cooldown:
    until: float
    reason: str
    level: int = 0  # quota backoff exponent; escalates while failures repeat


@dataclass(frozen=True, slots=True)
class Skip:
    credential: Credential
    reason: str


@dataclass(frozen=True, slots=True)
class Pick:
    index: int | None  # into the candidates; None when every one is tried or cooling
    skipped: tuple[Skip, ...]
    retry_after: float | None = None  # set when nothing is available: seconds until the soonest recovery


class Pool:
    def __init__(
        self,
        strategy: Strategy = "round-robin",
        *,
        disable_cooling: bool = False,
        transient_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.strategy: Strategy = strategy
        self.disable_cooling = disable_cooling
        self.transient_cooldown = transient_cooldown
        self._clock = clock
        self._model_cooldowns: dict[tuple[str, str], Cooldown] = {}
        self._credential_cooldowns: dict[str, Cooldown] = {}
        self._cursors: dict[str, int] = {}

    def configure(
        self, strategy: Strategy, *, disable_cooling: bool, transient_cooldown: float
    ) -> None:
        self.strategy = strategy
        self.disable_cooling = disable_cooling
        self.transient_cooldown = transient_cooldown
        if disable_cooling:
            self._model_cooldowns.clear()
            self._credential_cooldowns.clear()

    # -- selection -------------------------------------------------------------------------

    def blocked(self, credential: Credential, model: str) -> Cooldown | None:
        """The cooldown keeping `credential` from serving `model` now, if any."""
        now = self._clock()
        for cooldown in (
            self._credential_cooldowns.get(credential.id),
            self._model_cooldowns.get((credential.id, model)),
        ):
            if cooldown and cooldown.until > now:
                return cooldown
        return None

    def pick(
        self,
        candidates: Sequence[tuple[Credential, str]],
        cursor: str,
        tried: frozenset[str] | set[str] = frozenset(),
    ) -> Pick:
        """Choose among `(credential, model)` candidates, skipping those in `tried` (credential
        ids) and those cooling down. `cursor` names the round-robin sequence (the model asked for).
        """
        now = self._clock()
        skipped: list[Skip] = []
        available: list[int] = []
        soonest: float | None = None
        for i, (cred, model) in enumerate(candidates):
            if cred.id in tried:
                skipped.append(Skip(cred, "already tried for this request"))
                continue
            if cooldown := self.blocked(cred, model):
                wait = cooldown.until - now
                soonest = wait if soonest is None else min(soonest, wait)
                skipped.append(Skip(cred, f"cooling down for {wait:.0f}s ({cooldown.reason})"))
                continue
            available.append(i)
        if not available:
            return Pick(None, tuple(skipped), soonest)

        top = max(candidates[i][0].priority for i in available)
        tier = [i for i in available if candidates[i][0].priority == top]
        skipped.extend(
            Skip(candidates[i][0], f"priority {candidates[i][0].priority} < {top}")
            for i in available
            if candidates[i][0].priority != top
        )
        if self.strategy == "fill-first" or len(tier) == 1:
            return Pick(tier[0], tuple(skipped))
        position = self._cursors.get(cursor, 0)
        if cursor not in self._cursors and len(self._cursors) >= MAX_CURSORS:
            self._cursors.clear()
        self._cursors[cursor] = position + 1
        return Pick(tier[position % len(tier)], tuple(skipped))

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, credential: Credential, model: str) -> None:
        self._model_cooldowns.pop((credential.id, model), None)

    def failed(
        self, credential: Credential, model: str, status: int, retry_after: float | None = None
    ) -> float:
        """Record an upstream failure; returns the cooldown applied, in seconds."""
        if self.disable_cooling:
            return 0.0
        now = self._clock()
        if status in (401, 402, 403):
            # The credential itself is bad (revoked key, no billing): every model is affected.
            self._credential_cooldowns[credential.id] = Cooldown(
                now + AUTH_FAILURE_COOLDOWN, f"HTTP {status}"
            )
            return AUTH_FAILURE_COOLDOWN
        key = (credential.id, model)
        if status == 429:
            previous = self._model_cooldowns.get(key)
            level = previous.level if previous else 0
            if retry_after is not None:
                wait = min(max(retry_after, 0.0), QUOTA_BACKOFF_CAP)
            else:
                wait = min(QUOTA_BACKOFF_BASE * 2**level, QUOTA_BACKOFF_CAP)
                level += 1
            self._model_cooldowns[key] = Cooldown(now + wait, "quota exhausted (HTTP 429)", level)
            return wait
        if self.transient_cooldown <= 0:
            return 0.0
        reason = f"HTTP {status}" if status else "connection failed"
        previous = self._model_cooldowns.get(key)
        # An outage between two 429s does not reset the quota backoff.
        level = previous.level if previous else 0
        self._model_cooldowns[key] = Cooldown(now + self.transient_cooldown, reason, level)
        return self.transient_cooldown

    def forget(self, keep_ids: set[str]) -> None:
        """Drop state of credentials that left the config."""
        self._credential_cooldowns = {
            k: v for k, v in self._credential_cooldowns.items() if k in keep_ids
        }
        self._model_cooldowns = {
            k: v for k, v in self._model_cooldowns.items() if k[0] in keep_ids
        }
