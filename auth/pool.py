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
# How long the one request testing a rested credential has the credential to itself before
# another request may test it too (its outcome normally arrives with the response headers).
PROBE_WINDOW = 30.0

# Why a credential rests: its quota ran out, it could not be reached, it was refused, or the
# upstream failed otherwise (5xx, a cut stream).
RestKind = Literal["quota", "unreachable", "auth", "error"]


@dataclass(slots=True)
class Cooldown:
    until: float
    reason: str
    level: int = 0  # quota backoff exponent; escalates while failures repeat
    kind: RestKind = "error"
    # Once the rest is over, one request tests the credential (a half-open probe): until it
    # answers (or this moment passes), the others keep to other credentials.
    probing_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Skip:
    credential: Credential
    reason: str


@dataclass(frozen=True, slots=True)
class Pick:
    index: int | None  # into the candidates; None when every one is tried or cooling
    skipped: tuple[Skip, ...]
    retry_after: float | None = None  # set when nothing is available: seconds until the soonest recovery
    # When nothing is available: why the candidates that were not tried are resting.
    resting: tuple[Cooldown, ...] = ()


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
        # Credential ids switched off at run time (the management API): never picked, whatever
        # their rest; kept across config reloads for as long as the credential exists.
        self._disabled: set[str] = set()

    def configure(
        self, strategy: Strategy, *, disable_cooling: bool, transient_cooldown: float
    ) -> None:
        self.strategy = strategy
        self.disable_cooling = disable_cooling
        self.transient_cooldown = transient_cooldown
        if disable_cooling:
            self._model_cooldowns.clear()
            self._credential_cooldowns.clear()

    # -- switched off at run time -------------------------------------------------------------

    def disable(self, credential_id: str) -> None:
        self._disabled.add(credential_id)

    def enable(self, credential_id: str) -> None:
        self._disabled.discard(credential_id)

    def is_disabled(self, credential_id: str) -> bool:
        return credential_id in self._disabled

    # -- selection -------------------------------------------------------------------------

    def blocked(self, credential: Credential, model: str) -> Cooldown | None:
        """The cooldown keeping `credential` from serving `model` now, if any: a rest not over
        yet, or one whose probe is under way."""
        now = self._clock()
        for cooldown in self._cooldowns(credential, model):
            if cooldown.until > now or cooldown.probing_until > now:
                return cooldown
        return None

    def _cooldowns(self, credential: Credential, model: str) -> list[Cooldown]:
        found = []
        if cooldown := self._credential_cooldowns.get(credential.id):
            found.append(cooldown)
        if cooldown := self._model_cooldowns.get((credential.id, model)):
            found.append(cooldown)
        return found

    def _start_probe(self, credential: Credential, model: str) -> None:
        # A rest that is over but not yet cleared by a success: this request is its probe.
        now = self._clock()
        for cooldown in self._cooldowns(credential, model):
            cooldown.probing_until = now + PROBE_WINDOW

    def resting(
        self, candidates: Sequence[tuple[Credential, str]]
    ) -> list[tuple[Credential, Cooldown, float]]:
        """The candidates kept out now, each with its cooldown and the seconds it has left."""
        now = self._clock()
        found = []
        for cred, model in candidates:
            if cooldown := self.blocked(cred, model):
                found.append((cred, cooldown, max(0.0, max(cooldown.until, cooldown.probing_until) - now)))
        return found

    def release_probe(self, credential: Credential, model: str) -> None:
        """The probing request ended without a verdict on the credential (the client left)."""
        for cooldown in self._cooldowns(credential, model):
            cooldown.probing_until = 0.0

    def pick(
        self,
        candidates: Sequence[tuple[Credential, str]],
        cursor: str,
        tried: frozenset[str] | set[str] = frozenset(),
        *,
        probe: bool = True,
    ) -> Pick:
        """Choose among `(credential, model)` candidates, skipping those in `tried` (credential
        ids) and those cooling down. `cursor` names the round-robin sequence (the model asked for).
        A chosen credential whose rest is over becomes the one request testing it, unless
        `probe` is False (a question, not a choice).
        """
        now = self._clock()
        skipped: list[Skip] = []
        available: list[int] = []
        resting: list[Cooldown] = []
        soonest: float | None = None
        for i, (cred, model) in enumerate(candidates):
            if self._disabled and cred.id in self._disabled:
                skipped.append(Skip(cred, "disabled at run time"))
                continue
            if cred.id in tried:
                skipped.append(Skip(cred, "already tried for this request"))
                continue
            if cooldown := self.blocked(cred, model):
                wait = max(cooldown.until, cooldown.probing_until) - now
                soonest = wait if soonest is None else min(soonest, wait)
                resting.append(cooldown)
                if cooldown.until > now:
                    skipped.append(Skip(cred, f"cooling down for {wait:.0f}s ({cooldown.reason})"))
                else:
                    skipped.append(Skip(cred, f"being tested by another request after resting ({cooldown.reason})"))
                continue
            available.append(i)
        if not available:
            return Pick(None, tuple(skipped), soonest, tuple(resting))

        top = max(candidates[i][0].priority for i in available)
        tier = [i for i in available if candidates[i][0].priority == top]
        skipped.extend(
            Skip(candidates[i][0], f"priority {candidates[i][0].priority} < {top}")
            for i in available
            if candidates[i][0].priority != top
        )
        if self.strategy == "fill-first" or len(tier) == 1:
            chosen = tier[0]
        else:
            position = self._cursors.get(cursor, 0)
            if cursor not in self._cursors and len(self._cursors) >= MAX_CURSORS:
                self._cursors.clear()
            self._cursors[cursor] = position + 1
            chosen = tier[position % len(tier)]
        if probe and (self._model_cooldowns or self._credential_cooldowns):
            self._start_probe(*candidates[chosen])
        return Pick(chosen, tuple(skipped))

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, credential: Credential, model: str) -> None:
        self._model_cooldowns.pop((credential.id, model), None)

    def failed(
        self,
        credential: Credential,
        model: str,
        status: int,
        retry_after: float | None = None,
        *,
        reason: str | None = None,
        rest: float | None = None,
    ) -> float:
        """Record an upstream failure; returns the cooldown applied, in seconds.

        `status` 0 means the upstream could not be reached (refused, reset, timed out), with
        `reason` saying how. `rest` overrides the transient cooldown (a stream cut short rests
        the credential only briefly)."""
        if self.disable_cooling:
            return 0.0
        now = self._clock()
        if status in (401, 402, 403):
            # The credential itself is bad (revoked key, no billing): every model is affected.
            self._credential_cooldowns[credential.id] = Cooldown(
                now + AUTH_FAILURE_COOLDOWN, f"HTTP {status}", kind="auth"
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
            self._model_cooldowns[key] = Cooldown(now + wait, "quota exhausted (HTTP 429)", level, "quota")
            return wait
        wait = self.transient_cooldown if rest is None else rest
        if wait <= 0:
            return 0.0
        kind: RestKind = "error" if status else "unreachable"
        label = reason or (f"HTTP {status}" if status else "unreachable")
        previous = self._model_cooldowns.get(key)
        # An outage between two 429s does not reset the quota backoff.
        level = previous.level if previous else 0
        self._model_cooldowns[key] = Cooldown(now + wait, label, level, kind)
        return wait

    def rests(self, credential_id: str) -> list[tuple[str | None, Cooldown, float]]:
        """Every rest of one credential in force now: (the model it is for, or None for every
        model; the cooldown; seconds left, its probe included)."""
        now = self._clock()
        found: list[tuple[str | None, Cooldown, float]] = []
        whole = self._credential_cooldowns.get(credential_id)
        candidates = [(None, whole)] if whole is not None else []
        candidates += [(model, c) for (cid, model), c in self._model_cooldowns.items() if cid == credential_id]
        for model, cooldown in candidates:
            end = max(cooldown.until, cooldown.probing_until)
            if end > now:
                found.append((model, cooldown, end - now))
        return found

    def forget(self, keep_ids: set[str]) -> None:
        """Drop state of credentials that left the config."""
        self._disabled &= keep_ids
        self._credential_cooldowns = {
            k: v for k, v in self._credential_cooldowns.items() if k in keep_ids
        }
        self._model_cooldowns = {
            k: v for k, v in self._model_cooldowns.items() if k[0] in keep_ids
        }
