"""auth/quota.py: each vendor's rate-limit headers, as they come, and garbage that must not hurt."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from multidict import CIMultiDict

from auth.quota import QuotaBook, QuotaSnapshot, Window, parse_quota

NOW = 1_780_000_000.0


def window(snapshot: QuotaSnapshot | None, name: str) -> Window:
    assert snapshot is not None
    found = [w for w in snapshot.windows if w.name == name]
    assert len(found) == 1, snapshot
    return found[0]


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- Anthropic subscription (unified) windows ----------------------------------------------------

CLAUDE_MAX_ALLOWED = {
    "anthropic-ratelimit-unified-status": "allowed",
    "anthropic-ratelimit-unified-5h-status": "allowed",
    "anthropic-ratelimit-unified-5h-reset": str(int(NOW + 3600)),
    "anthropic-ratelimit-unified-5h-utilization": "0.19",
    "anthropic-ratelimit-unified-7d-status": "allowed",
    "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 5 * 86400)),
    "anthropic-ratelimit-unified-7d-utilization": "0.45",
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
    "anthropic-ratelimit-unified-fallback-percentage": "0.5",
    "anthropic-ratelimit-unified-reset": str(int(NOW + 3600)),
    "anthropic-ratelimit-unified-overage-status": "rejected",
    "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
}

# A 429 as Claude Code sees it when the 5-hour window is spent (no overall reset header).
CLAUDE_MAX_REJECTED = {
    "anthropic-ratelimit-unified-status": "rejected",
    "anthropic-ratelimit-unified-5h-status": "rejected",
    "anthropic-ratelimit-unified-5h-reset": str(int(NOW + 2094)),
    "anthropic-ratelimit-unified-5h-utilization": "1.0",
    "anthropic-ratelimit-unified-7d-status": "allowed",
    "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 3 * 86400)),
    "anthropic-ratelimit-unified-7d-utilization": "0.59",
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
    "anthropic-ratelimit-unified-overage-status": "rejected",
    "retry-after": "2094",
}


def test_unified_windows_are_read_with_their_utilization_reset_and_status():
    snapshot = parse_quota(CLAUDE_MAX_ALLOWED, NOW)
    five = window(snapshot, "5h")
    assert (five.used, five.resets_at, five.status) == (0.19, NOW + 3600, "allowed")
    seven = window(snapshot, "7d")
    assert (seven.used, seven.resets_at, seven.status) == (0.45, NOW + 5 * 86400, "allowed")
    assert window(snapshot, "unified").status == "allowed"
    # Extra usage not bought is no limit on the plan's own windows.
    assert not any(w.name == "overage" for w in snapshot.windows)
    assert snapshot.exhausted_until() is None
    assert snapshot.headroom() == pytest.approx(0.55)


def test_a_rejected_unified_window_is_exhausted_until_its_reset():
    snapshot = parse_quota(CLAUDE_MAX_REJECTED, NOW)
    assert snapshot.exhausted_until() == NOW + 2094
    assert snapshot.exhausted_window().name in ("5h", "unified")
    # The overall status borrows the representative claim's reset.
    assert window(snapshot, "unified").resets_at == NOW + 2094
    assert snapshot.headroom() == 0.0


def test_allowed_warning_is_not_exhausted_and_model_scoped_windows_are_read():
    headers = {
        "anthropic-ratelimit-unified-status": "allowed_warning",
        "anthropic-ratelimit-unified-7d_oi-status": "allowed_warning",
        "anthropic-ratelimit-unified-7d_oi-utilization": "0.91",
        "anthropic-ratelimit-unified-7d_oi-reset": str(int(NOW + 86400)),
    }
    snapshot = parse_quota(headers, NOW)
    assert window(snapshot, "7d_oi").used == 0.91
    assert snapshot.exhausted_until() is None
    assert snapshot.headroom() == pytest.approx(0.09)


def test_utilization_at_one_is_exhausted_without_a_status():
    headers = {
        "anthropic-ratelimit-unified-7d-utilization": "1.02",
        "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 7200)),
    }
    assert parse_quota(headers, NOW).exhausted_until() == NOW + 7200


# -- Anthropic API keys ---------------------------------------------------------------------------


def test_anthropic_api_key_limits_with_rfc3339_resets():
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": rfc3339(NOW + 2),
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "39000",
        "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 10),
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "30000",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:00.123456+00:00",
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": "9000",
        "anthropic-ratelimit-output-tokens-reset": rfc3339(NOW + 10),
    }
    snapshot = parse_quota(headers, NOW)
    requests = window(snapshot, "requests")
    assert (requests.limit, requests.remaining, requests.resets_at) == (50, 49, NOW + 2)
    assert window(snapshot, "tokens").remaining == 39000
    assert window(snapshot, "output-tokens").limit == 10000
    # A reset far from now (an old date here) is not believed.
    assert window(snapshot, "input-tokens").resets_at is None
    assert snapshot.exhausted_until() is None
    assert snapshot.headroom() == pytest.approx(0.9)


def test_no_requests_remaining_is_exhausted_until_the_reset():
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": rfc3339(NOW + 30),
    }
    snapshot = parse_quota(headers, NOW)
    assert snapshot.exhausted_until() == NOW + 30
    assert snapshot.exhausted_window().name == "requests"


# -- OpenAI API keys ------------------------------------------------------------------------------


def test_openai_limits_with_duration_resets():
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    snapshot = parse_quota(headers, NOW)
    assert window(snapshot, "requests").resets_at == NOW + 1
    assert window(snapshot, "tokens").resets_at == NOW + 360
    assert snapshot.headroom() == pytest.approx(59 / 60)


@pytest.mark.parametrize(
    "value, seconds",
    [("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0), ("17.5ms", 0.0175), ("2m", 120.0)],
)
def test_openai_durations(value, seconds):
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": value}
    assert parse_quota(headers, NOW).exhausted_until() == pytest.approx(NOW + seconds)


# -- Codex ----------------------------------------------------------------------------------------


def test_codex_primary_and_secondary_windows():
    headers = {
        "x-codex-primary-used-percent": "42.5",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(NOW + 5 * 3600)),
        "x-codex-secondary-used-percent": "13",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": "600000",
    }
    snapshot = parse_quota(headers, NOW)
    primary = window(snapshot, "primary")
    assert (primary.used, primary.resets_at) == (0.425, NOW + 5 * 3600)
    assert window(snapshot, "secondary").resets_at == NOW + 600000
    assert snapshot.headroom() == pytest.approx(0.575)


def test_codex_limit_reached():
    headers = {"x-codex-primary-used-percent": "100.0", "x-codex-primary-resets-at": str(int(NOW + 900))}
    assert parse_quota(headers, NOW).exhausted_until() == NOW + 900


def test_reset_in_milliseconds_is_read_as_such():
    headers = {"x-codex-primary-used-percent": "100", "x-codex-primary-reset-at": str(int((NOW + 60) * 1000))}
    assert parse_quota(headers, NOW).exhausted_until() == pytest.approx(NOW + 60)


# -- none, and garbage ------------------------------------------------------------------------------


def test_no_rate_limit_header_is_none():
    # What Gemini answers with: no quota headers at all.
    assert parse_quota({"content-type": "application/json", "x-request-id": "r", "server": "scaffolding"}, NOW) is None
    assert parse_quota({}, NOW) is None


GARBAGE = [
    "nan", "NaN", "inf", "-inf", "-1", "1e999", "", " ", "abc", "0x10", "1" * 500, "½", "None",
    "2024-13-45T99:99:99Z", "-5m", "5 m", "5mm", "1e308",
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_values_are_skipped_never_raised(value):
    names = [
        "anthropic-ratelimit-unified-status",
        "anthropic-ratelimit-unified-5h-utilization",
        "anthropic-ratelimit-unified-5h-reset",
        "anthropic-ratelimit-unified-5h-status",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-reset",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-requests",
        "x-ratelimit-reset-requests",
        "x-codex-primary-used-percent",
        "x-codex-primary-reset-at",
        "x-codex-primary-reset-after-seconds",
    ]
    snapshot = parse_quota({name: value for name in names}, NOW)
    for w in snapshot.windows if snapshot else ():
        assert w.used is None or (math.isfinite(w.used) and 0 <= w.used <= 2)
        assert w.remaining is None or w.remaining >= 0
        assert w.resets_at is None or abs(w.resets_at - NOW) <= 35 * 86400
    if snapshot:
        snapshot.exhausted_until()
        snapshot.headroom()


def test_values_in_the_wrong_unit_are_not_believed():
    headers = {
        "anthropic-ratelimit-unified-5h-utilization": "45",  # a percentage where a fraction belongs
        "anthropic-ratelimit-unified-5h-reset": "3600",  # seconds from now, not an epoch
        "anthropic-ratelimit-unified-7d-utilization": "0.5",
        "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 400 * 86400)),  # over a year away
    }
    snapshot = parse_quota(headers, NOW)
    assert window(snapshot, "5h").used is None and window(snapshot, "5h").resets_at is None
    assert window(snapshot, "7d").resets_at is None
    assert snapshot.exhausted_until() is None


def test_remaining_over_limit_is_dropped():
    headers = {"x-ratelimit-remaining-requests": "100", "x-ratelimit-limit-requests": "10"}
    w = window(parse_quota(headers, NOW), "requests")
    assert (w.remaining, w.limit) == (None, 10)


def test_case_insensitive_headers_as_aiohttp_hands_them_over():
    headers = CIMultiDict({"Anthropic-Ratelimit-Unified-Status": "rejected",
                           "Anthropic-Ratelimit-Unified-5h-Utilization": "1.0",
                           "Anthropic-Ratelimit-Unified-5h-Reset": str(int(NOW + 60))})
    assert parse_quota(headers, NOW).exhausted_until() == NOW + 60


# -- the book -----------------------------------------------------------------------------------


def test_book_keeps_the_latest_snapshot_per_credential_and_forgets():
    book = QuotaBook()
    assert book.observe("a", {"server": "x"}, NOW) is None
    assert book.get("a") is None
    first = book.observe("a", {"x-codex-primary-used-percent": "10"}, NOW)
    assert book.get("a") is first
    # An answer without quota headers keeps what is known.
    book.observe("a", {}, NOW + 1)
    assert book.get("a") is first
    book.observe("b", {"x-codex-primary-used-percent": "20"}, NOW)
    second = book.observe("a", {"x-codex-primary-used-percent": "30"}, NOW + 2)
    assert book.all() == {"a": second, "b": book.get("b")}
    book.forget({"b"})
    assert set(book.all()) == {"b"}
