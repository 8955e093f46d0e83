"""auth/pool.py acting on reported quota: exhausted windows rest a credential until they reset,
and credentials past the soft threshold are picked last within their tier."""

from __future__ import annotations

from auth.pool import QUOTA_REST_CAP, STRAIN_UNKNOWN_RESET, Pool
from auth.quota import QuotaSnapshot, Window
from tests.test_pool import MODEL, Clock, cred, picked, sequence

A, B, C = cred("a"), cred("b"), cred("c")
WALL = 1_780_000_000.0


def snap(*windows: Window, at: float = WALL) -> QuotaSnapshot:
    return QuotaSnapshot(at, windows)


def used(fraction: float, resets_in: float | None = 3600, name: str = "5h") -> Window:
    return Window(name, fraction, None, None, None if resets_in is None else WALL + resets_in, None)


def test_an_exhausted_window_rests_the_credential_until_it_resets():
    clock = Clock()
    pool = Pool(clock=clock)
    rest = pool.observe_quota(A, snap(Window("5h", 1.0, None, None, WALL + 120, "rejected")))
    assert rest is not None and rest.kind == "quota" and "5h" in rest.reason
    assert sequence(pool, [A, B], 3) == ["b", "b", "b"]
    [(who, cooldown, left)] = pool.resting([(A, MODEL), (B, MODEL)])
    assert who is A and left == 120
    clock.advance(119)
    assert picked(pool, [A]) is None
    clock.advance(1)
    # Back at the reset, without a probe holding the others off.
    assert picked(pool, [A]) is A
    assert picked(pool, [A]) is A


def test_a_rest_is_cleared_by_a_newer_answer_saying_the_window_is_open():
    pool = Pool(clock=Clock())
    pool.observe_quota(A, snap(used(1.0, 600)))
    assert picked(pool, [A]) is None
    assert pool.observe_quota(A, snap(used(0.2, 600))) is None
    assert picked(pool, [A]) is A


def test_exhausted_without_a_reset_is_not_rested_and_long_resets_are_capped():
    clock = Clock()
    pool = Pool(clock=clock)
    assert pool.observe_quota(A, snap(Window("unified", None, None, None, None, "rejected"))) is None
    assert picked(pool, [A]) is A
    pool.observe_quota(B, snap(used(1.0, 30 * 86400)))
    [(_, _, left)] = pool.resting([(B, MODEL)])
    assert left == QUOTA_REST_CAP


def test_no_quota_rest_when_cooling_is_disabled():
    pool = Pool(clock=Clock(), disable_cooling=True)
    assert pool.observe_quota(A, snap(used(1.0))) is None
    assert picked(pool, [A]) is A


def test_credentials_past_the_soft_threshold_are_picked_last():
    pool = Pool(clock=Clock(), soft_threshold=0.9)
    pool.observe_quota(A, snap(used(0.95)))
    pool.observe_quota(B, snap(used(0.5)))
    assert sequence(pool, [A, B, C], 4) == ["b", "c", "b", "c"]
    pick = pool.pick([(A, MODEL), (B, MODEL), (C, MODEL)], MODEL)
    assert any(s.credential is A and "soft threshold" in s.reason for s in pick.skipped)


def test_when_all_are_past_the_threshold_the_one_with_most_left_serves():
    pool = Pool(clock=Clock(), soft_threshold=0.9)
    pool.observe_quota(A, snap(used(0.97)))
    pool.observe_quota(B, snap(used(0.93)))
    assert sequence(pool, [A, B], 3) == ["b", "b", "b"]
    # Resting ones are out of the question; the strained one is still better than none.
    pool.observe_quota(B, snap(used(1.0)))
    assert picked(pool, [A, B]) is A


def test_priority_comes_before_headroom():
    pool = Pool(clock=Clock(), soft_threshold=0.9)
    high = cred("high", priority=5)
    pool.observe_quota(high, snap(used(0.99)))
    assert sequence(pool, [A, high], 2) == ["high", "high"]


def test_strain_ends_with_its_window_or_after_a_while_when_no_reset_is_known():
    clock = Clock()
    pool = Pool(clock=clock, soft_threshold=0.9)
    pool.observe_quota(A, snap(used(0.95, resets_in=60)))
    pool.observe_quota(B, snap(used(0.95, resets_in=None)))
    assert picked(pool, [A, C]) is C and picked(pool, [B, C]) is C
    clock.advance(60)
    assert sequence(pool, [A, C], 2, cursor="x") == ["a", "c"]
    assert picked(pool, [B, C], cursor="y") is C
    clock.advance(STRAIN_UNKNOWN_RESET)
    assert sequence(pool, [B, C], 2, cursor="z") == ["b", "c"]


def test_requests_remaining_count_toward_headroom():
    pool = Pool(clock=Clock(), soft_threshold=0.9)
    pool.observe_quota(A, snap(Window("requests", None, 2, 100, WALL + 10, None)))
    assert sequence(pool, [A, B], 2) == ["b", "b"]


def test_threshold_one_turns_the_preference_off_and_forget_drops_quota_state():
    pool = Pool(clock=Clock(), soft_threshold=1.0)
    pool.observe_quota(A, snap(used(0.99)))
    assert sequence(pool, [A, B], 2) == ["a", "b"]
    pool.configure("round-robin", disable_cooling=False, transient_cooldown=60, soft_threshold=0.9)
    pool.observe_quota(A, snap(used(0.99)))
    pool.observe_quota(B, snap(used(1.0)))
    pool.forget({"nobody"})
    assert sequence(pool, [A, B], 2, cursor="again") == ["a", "b"]
