"""auth/pool.py: which credential is picked, and how failures keep a credential out of the way.

Every test drives the pool with a fake clock, so cooldowns are exact and nothing sleeps.
"""

from __future__ import annotations

import pytest

from auth.credential import Credential
from auth.pool import AUTH_FAILURE_COOLDOWN, PROBE_WINDOW, QUOTA_BACKOFF_CAP, Pool

MODEL = "claude-sonnet-4-5"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cred(name: str, priority: int = 0) -> Credential:
    return Credential(provider="claude", source=name, secret=f"sk-{name}-secret", priority=priority)


A, B, C = cred("a"), cred("b"), cred("c")


def make_pool(clock: Clock, **kw) -> Pool:
    return Pool(clock=clock, **kw)


def picked(pool: Pool, creds, model: str = MODEL, cursor: str | None = None, tried=frozenset()):
    """The credential the pool picks among `creds` serving `model`, or None."""
    candidates = [(c, model) for c in creds]
    pick = pool.pick(candidates, cursor or model, tried)
    return None if pick.index is None else candidates[pick.index][0]


def sequence(pool: Pool, creds, n: int, **kw) -> list[str]:
    return [picked(pool, creds, **kw).source for _ in range(n)]


# -- strategies ---------------------------------------------------------------------------


def test_round_robin_rotates_through_the_candidates(clock):
    pool = make_pool(clock)
    assert sequence(pool, [A, B, C], 6) == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_keeps_one_cursor_per_model(clock):
    pool = make_pool(clock)
    assert picked(pool, [A, B], cursor="m1").source == "a"
    assert picked(pool, [A, B], cursor="m1").source == "b"
    # A different model starts its own rotation.
    assert picked(pool, [A, B], cursor="m2").source == "a"
    assert picked(pool, [A, B], cursor="m1").source == "a"


def test_round_robin_skips_a_cooling_credential(clock):
    pool = make_pool(clock)
    pool.failed(B, MODEL, 429, retry_after=60)
    assert set(sequence(pool, [A, B, C], 4)) == {"a", "c"}


def test_fill_first_always_picks_the_first_available(clock):
    pool = make_pool(clock, strategy="fill-first")
    assert sequence(pool, [A, B, C], 3) == ["a", "a", "a"]
    pool.failed(A, MODEL, 429, retry_after=60)
    assert sequence(pool, [A, B, C], 2) == ["b", "b"]


def test_fill_first_returns_to_the_first_once_it_recovers(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 429, retry_after=60)
    clock.advance(61)
    assert picked(pool, [A, B]).source == "a"


def test_a_single_candidate_is_picked(clock):
    assert picked(make_pool(clock), [A]) is A


def test_no_candidates_picks_nothing(clock):
    pick = make_pool(clock).pick([], MODEL)
    assert pick.index is None and pick.skipped == () and pick.retry_after is None


# -- priority tiers -----------------------------------------------------------------------


def test_only_the_highest_priority_tier_is_used(clock):
    high1, high2, low = cred("h1", 10), cred("h2", 10), cred("low", 1)
    pool = make_pool(clock)
    assert set(sequence(pool, [low, high1, high2], 6)) == {"h1", "h2"}


def test_lower_tier_serves_while_the_whole_top_tier_cools(clock):
    high1, high2, low = cred("h1", 10), cred("h2", 10), cred("low", 1)
    pool = make_pool(clock)
    pool.failed(high1, MODEL, 429, retry_after=30)
    assert picked(pool, [low, high1, high2]).source == "h2"
    pool.failed(high2, MODEL, 429, retry_after=30)
    assert picked(pool, [low, high1, high2]).source == "low"
    clock.advance(31)
    assert picked(pool, [low, high1, high2]).priority == 10


def test_lower_tier_serves_when_the_top_tier_was_tried(clock):
    high, low = cred("h", 5), cred("low", 0)
    pool = make_pool(clock)
    assert picked(pool, [low, high], tried={high.id}) is low


def test_lower_tier_skip_reason_names_the_priorities(clock):
    high, low = cred("h", 5), cred("low", 0)
    pick = make_pool(clock).pick([(low, MODEL), (high, MODEL)], MODEL)
    assert pick.index == 1
    (skip,) = pick.skipped
    assert skip.credential is low and "priority 0 < 5" in skip.reason


def test_negative_priorities_order_too(clock):
    ok, worse = cred("ok", -1), cred("worse", -5)
    assert picked(make_pool(clock), [worse, ok]) is ok


# -- tried ---------------------------------------------------------------------------------


def test_tried_credentials_are_excluded(clock):
    pool = make_pool(clock)
    assert sequence(pool, [A, B, C], 3, tried={A.id, C.id}) == ["b", "b", "b"]


def test_everything_tried_picks_nothing_and_says_why(clock):
    pick = make_pool(clock).pick([(A, MODEL), (B, MODEL)], MODEL, {A.id, B.id})
    assert pick.index is None
    assert pick.retry_after is None  # nothing is cooling: waiting would not help
    assert [s.credential for s in pick.skipped] == [A, B]
    assert all("already tried" in s.reason for s in pick.skipped)


# -- 429: quota cooldowns -----------------------------------------------------------------


def cooldowns_without_hint(pool: Pool, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(pool.failed(A, MODEL, 429))
    return out


def test_429_without_hint_backs_off_exponentially(clock):
    assert cooldowns_without_hint(make_pool(clock), 5) == [1, 2, 4, 8, 16]


def test_429_backoff_is_capped_at_30_minutes(clock):
    waits = cooldowns_without_hint(make_pool(clock), 14)
    assert waits[10] == 1024
    assert waits[11:] == [QUOTA_BACKOFF_CAP] * 3
    assert QUOTA_BACKOFF_CAP == 1800


def test_429_backoff_escalates_across_cooldowns_that_expired(clock):
    pool = make_pool(clock)
    assert pool.failed(A, MODEL, 429) == 1
    clock.advance(5)  # the first cooldown is over, the credential is picked again...
    assert picked(pool, [A]) is A
    assert pool.failed(A, MODEL, 429) == 2  # ...and fails again: a longer rest


def test_429_cooldown_keeps_the_credential_away_for_exactly_that_long(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429)
    pool.failed(A, MODEL, 429)  # 2 s
    clock.advance(1.9)
    assert picked(pool, [A]) is None
    clock.advance(0.2)
    assert picked(pool, [A]) is A


def test_success_resets_the_backoff(clock):
    pool = make_pool(clock)
    cooldowns_without_hint(pool, 4)
    clock.advance(100)
    pool.succeeded(A, MODEL)
    assert pool.failed(A, MODEL, 429) == 1


def test_success_clears_a_running_cooldown(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=600)
    pool.succeeded(A, MODEL)
    assert picked(pool, [A]) is A


@pytest.mark.parametrize(("hint", "applied"), [(42, 42), (0.5, 0.5), (7200, 1800), (-3, 0)])
def test_429_with_a_retry_after_hint_waits_exactly_that_capped(clock, hint, applied):
    pool = make_pool(clock)
    assert pool.failed(A, MODEL, 429, retry_after=hint) == applied


def test_429_hint_is_honoured_even_when_the_backoff_has_escalated(clock):
    pool = make_pool(clock)
    cooldowns_without_hint(pool, 6)  # next backoff would be 64 s
    assert pool.failed(A, MODEL, 429, retry_after=3) == 3
    clock.advance(3.5)
    assert picked(pool, [A]) is A


def test_429_cooldown_is_per_model(clock):
    pool = make_pool(clock)
    pool.failed(A, "claude-opus-4-1", 429, retry_after=300)
    assert picked(pool, [A], model="claude-opus-4-1") is None
    assert picked(pool, [A], model="claude-haiku-4-5") is A


def test_429_backoff_level_is_per_model(clock):
    pool = make_pool(clock)
    cooldowns_without_hint(pool, 3)
    assert pool.failed(A, "other-model", 429) == 1


def test_429_cooldown_is_per_credential(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=300)
    assert picked(pool, [A, B]) is B


# -- 401/402/403: the credential itself is bad ---------------------------------------------


@pytest.mark.parametrize("status", [401, 402, 403])
def test_auth_failure_sets_the_credential_aside_for_every_model(clock, status):
    pool = make_pool(clock)
    assert pool.failed(A, MODEL, status) == AUTH_FAILURE_COOLDOWN
    for model in (MODEL, "claude-opus-4-1", "anything-else"):
        assert picked(pool, [A], model=model) is None
        assert picked(pool, [A, B], model=model) is B


def test_auth_failure_ignores_the_retry_after_hint(clock):
    assert make_pool(clock).failed(A, MODEL, 401, retry_after=5) == AUTH_FAILURE_COOLDOWN


def test_auth_failure_ends_after_its_cooldown(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 401)
    clock.advance(AUTH_FAILURE_COOLDOWN + 1)
    assert picked(pool, [A]) is A


def test_a_success_on_another_model_does_not_clear_an_auth_failure(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 403)
    pool.succeeded(A, "other-model")
    assert picked(pool, [A], model="other-model") is None


# -- 5xx / connection errors: transient cooldown ----------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 0])
def test_transient_failure_rests_for_the_configured_time(clock, status):
    pool = make_pool(clock, transient_cooldown=20)
    assert pool.failed(A, MODEL, status) == 20
    clock.advance(19)
    assert picked(pool, [A]) is None
    assert picked(pool, [A], model="other-model") is A  # per model
    clock.advance(2)
    assert picked(pool, [A]) is A


def test_transient_cooldown_defaults_to_60_seconds(clock):
    assert make_pool(clock).failed(A, MODEL, 503) == 60


def test_transient_cooldown_zero_disables_it(clock):
    pool = make_pool(clock, transient_cooldown=0)
    assert pool.failed(A, MODEL, 503) == 0
    assert picked(pool, [A]) is A


def test_transient_cooldown_zero_still_cools_429_and_auth_failures(clock):
    pool = make_pool(clock, transient_cooldown=0)
    pool.failed(A, MODEL, 429)
    pool.failed(B, MODEL, 401)
    assert picked(pool, [A, B]) is None


def test_connection_failure_reason_is_named(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 0)
    (skip,) = pool.pick([(A, MODEL)], MODEL).skipped
    assert "unreachable" in skip.reason


# -- disable_cooling ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 401, 403, 500, 0])
def test_disable_cooling_records_nothing(clock, status):
    pool = make_pool(clock, disable_cooling=True)
    assert pool.failed(A, MODEL, status, retry_after=100) == 0
    assert pool.blocked(A, MODEL) is None
    assert picked(pool, [A]) is A


def test_disable_cooling_still_honours_tried(clock):
    pool = make_pool(clock, disable_cooling=True)
    assert picked(pool, [A, B], tried={A.id}) is B


# -- reporting: skip reasons and retry_after --------------------------------------------


def test_skip_reason_says_cooling_down_and_for_how_long(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=90)
    clock.advance(30)
    pick = pool.pick([(A, MODEL), (B, MODEL)], MODEL)
    (skip,) = pick.skipped
    assert skip.credential is A
    assert "cooling down" in skip.reason
    assert "60s" in skip.reason
    assert "429" in skip.reason


def test_skip_reason_for_an_auth_failure_names_the_status(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 401)
    (skip,) = pool.pick([(A, MODEL)], MODEL).skipped
    assert "cooling down" in skip.reason and "HTTP 401" in skip.reason


def test_retry_after_is_the_soonest_recovery_when_nothing_is_available(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=300)
    pool.failed(B, MODEL, 429, retry_after=40)
    pool.failed(C, MODEL, 401)
    clock.advance(10)
    pick = pool.pick([(A, MODEL), (B, MODEL), (C, MODEL)], MODEL)
    assert pick.index is None
    assert pick.retry_after == pytest.approx(30)


def test_retry_after_ignores_tried_credentials(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=50)
    pick = pool.pick([(A, MODEL), (B, MODEL)], MODEL, {B.id})
    assert pick.index is None and pick.retry_after == pytest.approx(50)


def test_retry_after_is_none_when_something_is_available(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=50)
    assert pool.pick([(A, MODEL), (B, MODEL)], MODEL).retry_after is None


def test_blocked_reports_the_cooldown(clock):
    pool = make_pool(clock)
    assert pool.blocked(A, MODEL) is None
    pool.failed(A, MODEL, 429, retry_after=10)
    blocked = pool.blocked(A, MODEL)
    assert blocked is not None and blocked.until == clock.now + 10


# -- config reloads --------------------------------------------------------------------------


def test_forget_drops_the_state_of_removed_credentials_only(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=100)
    pool.failed(B, MODEL, 401)
    pool.failed(C, MODEL, 429, retry_after=100)
    pool.forget({C.id})
    assert pool.blocked(A, MODEL) is None
    assert pool.blocked(B, MODEL) is None
    assert pool.blocked(C, MODEL) is not None


def test_a_removed_credential_that_comes_back_starts_fresh(clock):
    pool = make_pool(clock)
    cooldowns_without_hint(pool, 5)
    pool.forget(set())
    assert pool.failed(A, MODEL, 429) == 1


def test_cooldowns_survive_configure(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=100)
    pool.failed(B, MODEL, 403)
    pool.configure("fill-first", disable_cooling=False, transient_cooldown=5)
    assert pool.blocked(A, MODEL) is not None
    assert pool.blocked(B, MODEL) is not None
    assert pool.strategy == "fill-first"
    assert pool.failed(C, MODEL, 500) == 5


def test_backoff_level_survives_configure(clock):
    pool = make_pool(clock)
    cooldowns_without_hint(pool, 3)
    pool.configure("round-robin", disable_cooling=False, transient_cooldown=60)
    assert pool.failed(A, MODEL, 429) == 8


def test_configure_with_disable_cooling_clears_and_stops_cooling(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=100)
    pool.configure("round-robin", disable_cooling=True, transient_cooldown=60)
    assert picked(pool, [A]) is A
    pool.failed(A, MODEL, 429)
    assert picked(pool, [A]) is A


def test_credentials_rebuilt_from_the_same_key_share_cooldowns(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=100)
    rebuilt = cred("a")  # the same key read again after a config reload
    assert rebuilt is not A
    assert picked(pool, [rebuilt]) is None


def test_a_transient_failure_does_not_reset_the_quota_backoff(clock):
    pool = make_pool(clock, transient_cooldown=5)
    cooldowns_without_hint(pool, 3)  # 1, 2, 4: the next 429 rests 8 s
    clock.advance(10)
    pool.failed(A, MODEL, 503)
    clock.advance(10)
    assert pool.failed(A, MODEL, 429) == 8


# -- half-open probe ------------------------------------------------------------------------


def test_after_a_rest_one_request_tests_the_credential_while_others_keep_away(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 0, reason="unreachable: connect timeout")
    assert picked(pool, [A, B]) is B
    clock.advance(61)
    assert picked(pool, [A, B]) is A  # the rest is over: this request is the probe
    (skip,) = [s for s in pool.pick([(A, MODEL), (B, MODEL)], MODEL).skipped if s.credential is A]
    assert "being tested" in skip.reason
    assert picked(pool, [A, B]) is B  # concurrent requests keep to the others meanwhile
    pool.succeeded(A, MODEL)
    assert picked(pool, [A, B]) is A and picked(pool, [A, B]) is A  # cleared for everyone


def test_a_failed_probe_rests_the_credential_again_longer(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 429)  # 1 s
    clock.advance(1.5)
    assert picked(pool, [A, B]) is A
    assert pool.failed(A, MODEL, 429) == 2  # the probe failed: a longer rest
    assert picked(pool, [A, B]) is B


def test_a_probe_that_ends_without_a_verdict_frees_the_credential(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 500)
    clock.advance(61)
    assert picked(pool, [A, B]) is A
    pool.release_probe(A, MODEL)  # the client hung up before the upstream answered
    assert picked(pool, [A, B]) is A


def test_an_abandoned_probe_expires(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 500)
    clock.advance(61)
    assert picked(pool, [A, B]) is A
    assert picked(pool, [A, B]) is B
    clock.advance(PROBE_WINDOW + 1)
    assert picked(pool, [A, B]) is A


def test_a_question_about_the_pool_starts_no_probe(clock):
    pool = make_pool(clock, strategy="fill-first")
    pool.failed(A, MODEL, 500)
    clock.advance(61)
    assert pool.pick([(A, MODEL)], MODEL, probe=False).index == 0
    assert picked(pool, [A, B]) is A  # still free to be the probe


def test_resting_says_why_and_for_how_long(clock):
    pool = make_pool(clock)
    pool.failed(A, MODEL, 429, retry_after=30)
    pool.failed(B, MODEL, 0, reason="unreachable: connection refused")
    rest = {cred.source: (cooldown.kind, cooldown.reason, round(left)) for cred, cooldown, left in pool.resting([(A, MODEL), (B, MODEL), (C, MODEL)])}
    assert rest == {"a": ("quota", "quota exhausted (HTTP 429)", 30), "b": ("unreachable", "unreachable: connection refused", 60)}
