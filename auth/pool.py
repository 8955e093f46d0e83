"""Credential selection and cooldown.

The pool knows nothing about HTTP or formats: callers hand it the candidates that can serve a
model, it picks one by priority tier and strategy, and it remembers upstream failures per
(credential, model) so that an exhausted credential is skipped before the next dispatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from auth.credential import Credential
from auth.quota import QuotaSnapshot

Strategy = Literal["round-robin", "fill-first"]

QUOTA_BACKOFF_BASE = 1.0
QUOTA_BACKOFF_CAP = 30 * 60.0
AUTH_FAILURE_COOLDOWN = 30 * 60.0
MAX_CURSORS = 4096
# A window reported exhausted rests its credential until it resets, a week's window included.
QUOTA_REST_CAP = 8 * 86400.0
# How long a credential counts as nearly used up when its window did not say when it resets:
# it is picked last meanwhile, so no newer answer may come to say otherwise.
STRAIN_UNKNOWN_RESET = 300.0
DEFAULT_SOFT_THRESHOLD = 0.95
# How long the one request testing a rested credential has the credential to itself before
# another request may test it too (its outcome normally arrives with the response headers).
PROBE_WINDOW = 30.0

# Why a credential rests: its quota ran out, it could not be reached, it was refused, or the
# upstream failed otherwise (5xx, a cut stream).
RestKind = Literal["quota", "unreachable", "auth", "error"]
# What a rest keeps out: one model of a credential, every model of it (refused), or every model
# until its quota window resets.
RestScope = Literal["model", "credential", "quota"]


@dataclass(slots=True)
class Cooldown:
    until: float
    reason: str
    level: int = 0  # quota backoff exponent; escalates while failures repeat
    kind: RestKind = "error"
    # Once the rest is over, one request tests the credential (a half-open probe): until it
    # answers (or this moment passes), the others keep to other credentials.
    probing_until: float = 0.0


class PoolObserver(Protocol):
    """Told of every change the pool makes on its own (the state store shares them); never of
    those it adopts from elsewhere. Called on the request path: must not block."""

    def rested(self, scope: RestScope, credential_id: str, model: str, cooldown: Cooldown, left: float) -> None: ...

    def cleared(self, scope: RestScope, credential_id: str, model: str) -> None: ...

    def switched(self, credential_id: str, disabled: bool) -> None: ...


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


@dataclass(frozen=True, slots=True)
class Strain:
    """A credential whose quota is nearly used up (past the soft threshold)."""

    used: float  # the largest fraction used over its windows
    until: float  # clock time when that window resets


class Pool:
    def __init__(
        self,
        strategy: Strategy = "round-robin",
        *,
        disable_cooling: bool = False,
        transient_cooldown: float = 60.0,
        soft_threshold: float = DEFAULT_SOFT_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.strategy: Strategy = strategy
        self.disable_cooling = disable_cooling
        self.transient_cooldown = transient_cooldown
        self.soft_threshold = soft_threshold
        self._clock = clock
        self._model_cooldowns: dict[tuple[str, str], Cooldown] = {}
        self._credential_cooldowns: dict[str, Cooldown] = {}
        # Credentials whose upstream reported a quota window exhausted, until it resets. No
        # probe afterwards: the vendor said when the window opens again.
        self._quota_rests: dict[str, Cooldown] = {}
        self._strained: dict[str, Strain] = {}
        self._cursors: dict[str, int] = {}
        # Credential ids switched off at run time (the management API): never picked, whatever
        # their rest; kept across config reloads for as long as the credential exists.
        self._disabled: set[str] = set()
        self.observer: PoolObserver | None = None

    def configure(
        self,
        strategy: Strategy,
        *,
        disable_cooling: bool,
        transient_cooldown: float,
        soft_threshold: float = DEFAULT_SOFT_THRESHOLD,
    ) -> None:
        self.strategy = strategy
        self.disable_cooling = disable_cooling
        self.transient_cooldown = transient_cooldown
        if soft_threshold != self.soft_threshold:
            self.soft_threshold = soft_threshold
            self._strained.clear()  # judged against the old threshold; the next answers tell
        if disable_cooling:
            self._model_cooldowns.clear()
            self._credential_cooldowns.clear()
            self._quota_rests.clear()

    # -- switched off at run time -------------------------------------------------------------

    def disable(self, credential_id: str) -> None:
        self._disabled.add(credential_id)
        if self.observer is not None:
            self.observer.switched(credential_id, True)

    def enable(self, credential_id: str) -> None:
        self._disabled.discard(credential_id)
        if self.observer is not None:
            self.observer.switched(credential_id, False)

    def adopt_switches(self, disabled: set[str]) -> None:
        """Another instance's word on which credentials are switched off."""
        self._disabled = set(disabled)

    def adopt_switch(self, credential_id: str, disabled: bool) -> None:
        if disabled:
            self._disabled.add(credential_id)
        else:
            self._disabled.discard(credential_id)

    @property
    def disabled(self) -> frozenset[str]:
        return frozenset(self._disabled)

    def is_disabled(self, credential_id: str) -> bool:
        return credential_id in self._disabled

    # -- selection -------------------------------------------------------------------------

    def blocked(self, credential: Credential, model: str) -> Cooldown | None:
        """The cooldown keeping `credential` from serving `model` now, if any: a rest not over
        yet, or one whose probe is under way."""
        now = self._clock()
        if self._quota_rests and (rest := self._quota_rests.get(credential.id)) is not None:
            if rest.until > now:
                return rest
            del self._quota_rests[credential.id]
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
        position: int | None = None,
    ) -> Pick:
        """Choose among `(credential, model)` candidates, skipping those in `tried` (credential
        ids) and those cooling down. `cursor` names the round-robin sequence (the model asked for);
        `position`, when given, is where that sequence stands (shared by several instances), in
        place of this pool's own count. A chosen credential whose rest is over becomes the one
        request testing it, unless `probe` is False (a question, not a choice).
        """
        skipped: list[Skip] = []
        resting: list[Cooldown] = []
        tier, soonest = self._screen(candidates, tried, skipped, resting)
        if not tier:
            return Pick(None, tuple(skipped), soonest, tuple(resting))
        if self.strategy == "fill-first" or len(tier) == 1:
            chosen = tier[0]
        else:
            if position is None:
                position = self._cursors.get(cursor, 0)
                if cursor not in self._cursors and len(self._cursors) >= MAX_CURSORS:
                    self._cursors.clear()
                self._cursors[cursor] = position + 1
            chosen = tier[position % len(tier)]
        if probe and (self._model_cooldowns or self._credential_cooldowns):
            self._start_probe(*candidates[chosen])
        return Pick(chosen, tuple(skipped))

    def rotates(
        self, candidates: Sequence[tuple[Credential, str]], tried: frozenset[str] | set[str] = frozenset()
    ) -> bool:
        """Whether a pick among `candidates` now would advance a round-robin cursor (more than
        one credential in the tier it would choose from)."""
        if self.strategy != "round-robin":
            return False
        tier, _ = self._screen(candidates, tried, [], [])
        return len(tier) > 1

    def _screen(
        self,
        candidates: Sequence[tuple[Credential, str]],
        tried: frozenset[str] | set[str],
        skipped: list[Skip],
        resting: list[Cooldown],
    ) -> tuple[list[int], float | None]:
        """The indexes of the tier to choose from (available, top priority, with headroom), and
        when nothing is available the seconds until the soonest recovery."""
        now = self._clock()
        available: list[int] = []
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
            return [], soonest
        top = max(candidates[i][0].priority for i in available)
        tier = [i for i in available if candidates[i][0].priority == top]
        skipped.extend(
            Skip(candidates[i][0], f"priority {candidates[i][0].priority} < {top}")
            for i in available
            if candidates[i][0].priority != top
        )
        if self._strained and len(tier) > 1:
            tier = self._by_headroom(tier, candidates, now, skipped)
        return tier, None

    def _by_headroom(
        self, tier: list[int], candidates: Sequence[tuple[Credential, str]], now: float, skipped: list[Skip]
    ) -> list[int]:
        """The tier without its credentials past the soft quota threshold, unless all are: then
        the one with the most left."""
        roomy: list[int] = []
        strained: list[tuple[float, int]] = []
        for i in tier:
            cred = candidates[i][0]
            strain = self._strained.get(cred.id)
            if strain is not None and strain.until <= now:
                del self._strained[cred.id]
                strain = None
            if strain is None:
                roomy.append(i)
            else:
                strained.append((strain.used, i))
        if not strained:
            return tier
        if roomy:
            skipped.extend(
                Skip(candidates[i][0], f"quota {used:.0%} used, past the soft threshold") for used, i in strained
            )
            return roomy
        return [min(strained)[1]]

    # -- quota the upstream reported ----------------------------------------------------------

    def observe_quota(self, credential: Credential, snapshot: QuotaSnapshot) -> Cooldown | None:
        """Act on the quota an upstream answer reported for `credential`: rest it until its
        exhausted window resets, and remember whether it is past the soft threshold. Returns
        the rest when this snapshot starts (or lengthens) one."""
        now = self._clock()
        started = None
        exhausted = snapshot.exhausted_window()
        left = 0.0 if exhausted is None else exhausted.resets_at - snapshot.observed_at  # type: ignore[operator]
        if left > 0 and not self.disable_cooling:
            until = now + min(left, QUOTA_REST_CAP)
            current = self._quota_rests.get(credential.id)
            if current is None or current.until < until:
                reason = f"quota window {exhausted.name} exhausted"  # type: ignore[union-attr]
                started = self._quota_rests[credential.id] = Cooldown(until, reason, kind="quota")
                self._rested("quota", credential.id, "", started, now)
        elif self._quota_rests.pop(credential.id, None) is not None:
            # A newer answer says no window is exhausted (it reset early, or the last one lied).
            self._cleared("quota", credential.id, "")
        strain = self._strain(snapshot, now)
        if strain is None:
            self._strained.pop(credential.id, None)
        else:
            self._strained[credential.id] = strain
        return started

    def _strain(self, snapshot: QuotaSnapshot, now: float) -> Strain | None:
        worst = None
        for window in snapshot.windows:
            used = window.fraction_used
            if used is not None and used >= self.soft_threshold and (worst is None or used > worst[0]):
                worst = (used, window.resets_at)
        if worst is None:
            return None
        used, resets_at = worst
        left = STRAIN_UNKNOWN_RESET if resets_at is None else min(resets_at - snapshot.observed_at, QUOTA_REST_CAP)
        return Strain(used, now + left) if left > 0 else None

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, credential: Credential, model: str) -> None:
        if self._model_cooldowns and self._model_cooldowns.pop((credential.id, model), None) is not None:
            self._cleared("model", credential.id, model)

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
            cooldown = self._credential_cooldowns[credential.id] = Cooldown(
                now + AUTH_FAILURE_COOLDOWN, f"HTTP {status}", kind="auth"
            )
            self._rested("credential", credential.id, "", cooldown, now)
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
            cooldown = self._model_cooldowns[key] = Cooldown(now + wait, "quota exhausted (HTTP 429)", level, "quota")
            self._rested("model", credential.id, model, cooldown, now)
            return wait
        wait = self.transient_cooldown if rest is None else rest
        if wait <= 0:
            return 0.0
        kind: RestKind = "error" if status else "unreachable"
        label = reason or (f"HTTP {status}" if status else "unreachable")
        previous = self._model_cooldowns.get(key)
        # An outage between two 429s does not reset the quota backoff.
        level = previous.level if previous else 0
        cooldown = self._model_cooldowns[key] = Cooldown(now + wait, label, level, kind)
        self._rested("model", credential.id, model, cooldown, now)
        return wait

    # -- rests other instances recorded (the state store) ----------------------------------------

    def _rested(self, scope: RestScope, credential_id: str, model: str, cooldown: Cooldown, now: float) -> None:
        if self.observer is not None:
            self.observer.rested(scope, credential_id, model, cooldown, cooldown.until - now)

    def _cleared(self, scope: RestScope, credential_id: str, model: str) -> None:
        if self.observer is not None:
            self.observer.cleared(scope, credential_id, model)

    def adopt_rest(
        self, scope: RestScope, credential_id: str, model: str, reason: str, kind: RestKind, level: int, left: float
    ) -> bool:
        """A rest another instance recorded, `left` seconds from now; kept unless this pool
        already holds a longer one. Returns whether it was taken."""
        if self.disable_cooling or left <= 0:
            return False
        until = self._clock() + left
        table, key = self._table(scope, credential_id, model)
        current = table.get(key)
        if current is not None and current.until >= until:
            return False
        table[key] = Cooldown(until, reason, level, kind)
        return True

    def drop_rest(self, scope: RestScope, credential_id: str, model: str) -> None:
        """Another instance saw the credential recover: its rest is over here too."""
        table, key = self._table(scope, credential_id, model)
        table.pop(key, None)

    def _table(self, scope: RestScope, credential_id: str, model: str) -> tuple[dict, object]:
        if scope == "model":
            return self._model_cooldowns, (credential_id, model)
        if scope == "credential":
            return self._credential_cooldowns, credential_id
        return self._quota_rests, credential_id

    def held_rests(self) -> list[tuple[RestScope, str, str, Cooldown, float]]:
        """Every rest not over yet: (scope, credential id, model or "", cooldown, seconds left)."""
        now = self._clock()
        found: list[tuple[RestScope, str, str, Cooldown, float]] = []
        for (cid, model), c in self._model_cooldowns.items():
            if c.until > now:
                found.append(("model", cid, model, c, c.until - now))
        for cid, c in self._credential_cooldowns.items():
            if c.until > now:
                found.append(("credential", cid, "", c, c.until - now))
        for cid, c in self._quota_rests.items():
            if c.until > now:
                found.append(("quota", cid, "", c, c.until - now))
        return found

    def rests(self, credential_id: str) -> list[tuple[str | None, Cooldown, float]]:
        """Every rest of one credential in force now: (the model it is for, or None for every
        model; the cooldown; seconds left, its probe included)."""
        now = self._clock()
        found: list[tuple[str | None, Cooldown, float]] = []
        candidates: list[tuple[str | None, Cooldown]] = [
            (None, c)
            for c in (self._quota_rests.get(credential_id), self._credential_cooldowns.get(credential_id))
            if c is not None
        ]
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
        self._quota_rests = {k: v for k, v in self._quota_rests.items() if k in keep_ids}
        self._strained = {k: v for k, v in self._strained.items() if k in keep_ids}
