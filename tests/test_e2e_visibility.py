"""Seeing the pool, through a real mitmdump: a log line per request, usage rows in SQLite (with
the upstream's token counts, across a restart), `cliproxy usage`, and quota read from the
vendors' rate-limit headers and acted on."""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from mitmproxy import io as mitm_io

from routing.usage import COLUMNS, open_readonly
from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

CLIENT = "visibility-client-key-do-not-log"
CLA_A = "sk-ant-visibility-key-AAAA-secret"
CLA_B = "sk-ant-visibility-key-BBBB-secret"
GEM = "AIza-visibility-gemini-GGGG-secret"
CDX_A = "sk-visibility-codex-CCCC-secret"
CDX_B = "sk-visibility-codex-DDDD-secret"
CMP_A = "sk-visibility-compat-EEEE-secret"
CMP_B = "sk-visibility-compat-FFFF-secret"
SECRETS = (CLIENT, CLA_A, CLA_B, GEM, CDX_A, CDX_B, CMP_A, CMP_B)
EVENTS = 5  # the fake's default stream_events: its output token count


def pool_config(fake: FakeUpstream, **extra) -> dict:
    return {
        "api-keys": [CLIENT],
        "claude-api-key": [{"api-key": CLA_A}, {"api-key": CLA_B}],
        "gemini-api-key": [{"api-key": GEM}],
        "codex-api-key": [{"api-key": CDX_A}, {"api-key": CDX_B}],
        "openai-compatibility": [
            {
                "name": "compat",
                "base-url": fake.base_url + "/v1",
                "api-key-entries": [{"api-key": CMP_A}, {"api-key": CMP_B}],
                "models": [{"name": "compat-model"}],
            }
        ],
        "upstream-overrides": vendor_overrides(fake),
        **extra,
    }


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(pool_config(fake, **{"routing": {"strategy": "fill-first"}, "credential-header": "listener"}))


# -- talking to the proxy in each API ---------------------------------------------------------------


def call(proxy, api: str, model: str, stream: bool = False, *, include_usage: bool = False, key: str = CLIENT) -> httpx.Response:
    """One request in `api`, read to the end."""
    if api == "openai-chat":
        path, headers = "/v1/chat/completions", {"authorization": f"Bearer {key}"}
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    elif api == "anthropic":
        path, headers = "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
        body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    elif api == "openai-responses":
        path, headers = "/v1/responses", {"authorization": f"Bearer {key}"}
        body = {"model": model, "input": "hi", "stream": stream}
    else:
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path, headers = f"/v1beta/models/{model}:{action}", {"x-goog-api-key": key}
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.stream("POST", proxy.base_url + path, json=body, headers=headers, timeout=30) as response:
        response.read()
    return response


def rows(proxy) -> list[dict]:
    path = proxy.workdir / "usage.db"
    if not path.exists():
        return []
    try:
        db = open_readonly(path)
    except sqlite3.Error:
        return []
    with db:
        found = [dict(zip(COLUMNS, row)) for row in db.execute(f"SELECT {', '.join(COLUMNS)} FROM requests ORDER BY rowid")]
    db.close()
    return found


def wait_rows(proxy, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while (found := rows(proxy)) and len(found) < count or not found and count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} usage rows, expected {count}")
        time.sleep(0.05)
    return found


def upstream_input_tokens(fake: FakeUpstream) -> int:
    """What the fake reported as input tokens for the last request it answered."""
    return max(1, len(fake.requests[-1].body) // 4)


# -- usage rows with the upstream's tokens, in every client API ---------------------------------------

CASES = [
    # (client API, model, stream, provider, translated)
    ("openai-chat", "compat-model", False, "compat", False),
    ("openai-chat", "compat-model", True, "compat", False),
    ("anthropic", "claude-test-1", False, "claude", False),
    ("anthropic", "claude-test-1", True, "claude", False),
    ("openai-responses", "gpt-5", False, "codex", False),
    ("openai-responses", "gpt-5", True, "codex", False),
    ("gemini", "gemini-2.5-flash", False, "gemini", False),
    ("gemini", "gemini-2.5-flash", True, "gemini", False),
    ("openai-chat", "claude-test-1", False, "claude", True),
    ("openai-chat", "claude-test-1", True, "claude", True),
    ("anthropic", "gemini-2.5-flash", False, "gemini", True),
    ("anthropic", "gemini-2.5-flash", True, "gemini", True),
    ("openai-responses", "claude-test-1", False, "claude", True),
    ("openai-responses", "claude-test-1", True, "claude", True),
    ("gemini", "claude-test-1", False, "claude", True),
    ("gemini", "claude-test-1", True, "claude", True),
    ("openai-chat", "gpt-5", True, "codex", True),
]


@pytest.mark.parametrize("api, model, stream, provider, translated", CASES)
def test_each_request_is_a_usage_row_with_the_upstreams_tokens(proxy, fake, api, model, stream, provider, translated):
    before = len(rows(proxy))
    response = call(proxy, api, model, stream, include_usage=True)
    assert response.status_code == 200, response.text
    (upstream,) = fake.requests
    assert upstream.vendor != api or not translated
    [*_, row] = wait_rows(proxy, before + 1)
    assert row["client_api"] == api and row["model"] == model and row["provider"] == provider
    assert (row["status"], row["error"], row["attempts"], row["client_key"]) == (200, None, 1, "key-1")
    assert (row["input_tokens"], row["output_tokens"]) == (upstream_input_tokens(fake), EVENTS)
    assert (row["cached_tokens"], row["reasoning_tokens"]) == (0, 0)
    assert 0 < row["first_byte_ms"] <= row["latency_ms"]
    assert CLA_A not in str(row) and CLIENT not in str(row)


def test_a_chat_stream_without_usage_asked_for_has_no_token_counts(proxy, fake):
    before = len(rows(proxy))
    assert call(proxy, "openai-chat", "compat-model", True).status_code == 200
    [*_, row] = wait_rows(proxy, before + 1)
    # The upstream reported none: none is recorded, rather than a guess.
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (200, None, None)


def test_failures_are_rows_too(proxy, fake):
    before = len(rows(proxy))
    fake.fail(GEM, 400, times=1)  # the request's fault: passed on, the key does not rest
    assert call(proxy, "gemini", "gemini-2.5-flash").status_code == 400
    assert call(proxy, "anthropic", "no-such-model").status_code == 404
    *_, failed, unknown = wait_rows(proxy, before + 2)
    assert (failed["status"], failed["error"], failed["input_tokens"]) == (400, "upstream_4xx", None)
    assert failed["credential"].startswith("gemini-api-key[0]")
    assert (unknown["status"], unknown["error"], unknown["credential"]) == (404, "unknown_model", "")


def test_a_stream_cut_off_is_recorded_as_such(proxy, fake):
    before = len(rows(proxy))
    fake.fault(CLA_A, "early_end", after=3, times=1)
    response = call(proxy, "anthropic", "claude-test-1", True)
    assert b"cut off" in response.content
    [*_, row] = wait_rows(proxy, before + 1)
    assert (row["status"], row["error"]) == (200, "cut_off")


def test_one_log_line_per_request_and_no_secret_in_the_log(proxy, fake):
    start = len(proxy.output())
    call(proxy, "anthropic", "claude-test-1")
    call(proxy, "openai-chat", "claude-test-1", True)
    call(proxy, "gemini", "gemini-2.5-flash", True)
    call(proxy, "openai-responses", "gpt-5")
    proxy.wait_for_output("openai-responses /v1/responses gpt-5", start=start)
    lines = [line for line in proxy.output()[start:].splitlines() if " via " in line and "cliproxy: " in line]
    assert len(lines) == 4, lines
    tokens = upstream_input_tokens_for(fake, 0)
    assert re.search(
        r"cliproxy: anthropic /v1/messages claude-test-1 via claude claude-api-key\[[01]\] \(…cret\): 200 in \d+ms "
        rf"\(first byte \d+ms\), 1 attempt, tokens {tokens} in / {EVENTS} out, client key-1$",
        lines[0],
    ), lines[0]
    assert "openai-chat /v1/chat/completions claude-test-1 via claude" in lines[1]
    assert "gemini /v1beta/models/gemini-2.5-flash:streamGenerateContent gemini-2.5-flash via gemini" in lines[2]
    # mitmdump's own line per flow (`<< 200 OK`) is off unless asked for: it would say less, twice.
    assert " << " not in proxy.output()[start:]
    log = proxy.output()
    for secret in SECRETS:
        assert secret not in log


def test_mitmdumps_own_flow_lines_when_asked_for(fake, make_proxy):
    # Any level but mitmproxy's default, which reads as not asked for.
    proxy = make_proxy(pool_config(fake), extra_args=("--set", "flow_detail=2"))
    call(proxy, "anthropic", "claude-test-1")
    proxy.wait_for_output(" << 200 OK")
    proxy.wait_for_output("cliproxy: anthropic /v1/messages claude-test-1 via claude")


def upstream_input_tokens_for(fake: FakeUpstream, index: int) -> int:
    return max(1, len(fake.requests[index].body) // 4)


def test_the_credential_header_names_who_served(proxy, fake):
    response = call(proxy, "anthropic", "claude-test-1")
    position = [CLA_A, CLA_B].index(fake.keys_used()[-1])
    assert response.headers["x-cliproxy-credential"] == f"claude-api-key[{position}] (…cret)"
    response = call(proxy, "openai-chat", "gemini-2.5-flash", True)
    assert response.headers["x-cliproxy-credential"] == "gemini-api-key[0] (…cret)"


def test_no_credential_header_unless_asked(fake, make_proxy):
    proxy = make_proxy(pool_config(fake))
    assert "x-cliproxy-credential" not in call(proxy, "anthropic", "claude-test-1").headers


# -- what mitmweb and saved flows show -------------------------------------------------------------


@pytest.mark.parametrize("api, model, stream", [
    ("anthropic", "claude-test-1", False),  # answered whole
    ("anthropic", "claude-test-1", True),  # through the relay
    ("openai-chat", "claude-test-1", True),  # through the relay, translated
    ("gemini", "claude-test-1", False),  # answered whole, translated
])
def test_a_kept_flow_shows_the_clients_request_and_names_the_upstream(fake, make_proxy, tmp_path, api, model, stream):
    flows = tmp_path / "flows.mitm"
    proxy = make_proxy(pool_config(fake), extra_args=("-w", str(flows)))
    assert call(proxy, api, model, stream).status_code == 200
    sent = fake.requests[-1]
    proxy.stop()
    with flows.open("rb") as f:
        (flow,) = [fl for fl in mitm_io.FlowReader(f).stream() if fl.type == "http"]
    # The request as the client made it (its key masked), not the relay's head or the upstream's.
    assert flow.request.host == "cliproxy.invalid"
    assert flow.request.path.split("?")[0] == {
        "anthropic": "/v1/messages",
        "openai-chat": "/v1/chat/completions",
        "gemini": f"/v1beta/models/{model}:generateContent",
    }[api]
    assert json.loads(flow.request.content)["contents" if api == "gemini" else "messages"]
    assert "x-cliproxy-flow" not in flow.request.headers
    assert CLIENT.encode() not in flows.read_bytes()
    annotation = flow.metadata["cliproxy"]
    assert annotation["upstream_url"] == fake.base_url + sent.path
    assert annotation["attempt_log"][0]["outcome"] == "200"
    assert flow.response.status_code == 200


# -- kept on disk: restarts, kill -9, `cliproxy usage` ------------------------------------------------------


def cliproxy_usage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing.cli", "usage", *args],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )


def test_usage_survives_restarts_and_kill_9_and_cliproxy_usage_totals_it(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, **{"request-retry": 0}))
    for _ in range(3):
        call(proxy, "anthropic", "claude-test-1")
    call(proxy, "gemini", "gemini-2.5-flash", True)
    wait_rows(proxy, 4)
    proxy.stop()
    proxy.start()
    call(proxy, "openai-chat", "compat-model", True, include_usage=True)
    wait_rows(proxy, 5)
    # Committed rows survive the process dying without a word.
    proxy.process.kill()
    proxy.process.wait()
    proxy.log.close()
    proxy.start()
    fake.fail(CMP_A, 429, times=1)
    fake.fail(CMP_B, 429, times=1)
    assert call(proxy, "openai-chat", "compat-model").status_code == 429
    found = wait_rows(proxy, 6)
    assert len(found) == 6

    result = cliproxy_usage("--config", str(proxy.config_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"] == "local"
    total = report["total"]
    assert (total["requests"], total["errors"]) == (6, 1)
    assert total["input_tokens"] == sum(r["input_tokens"] or 0 for r in found)
    assert total["output_tokens"] == 5 * EVENTS

    by_model = json.loads(cliproxy_usage("--config", str(proxy.config_path), "--json", "--by", "model").stdout)
    assert {r["key"]: r["requests"] for r in by_model["rows"]} == {
        "claude-test-1": 3, "gemini-2.5-flash": 1, "compat-model": 2,
    }
    table = cliproxy_usage("--config", str(proxy.config_path), "--by", "provider", "--since", "90m")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["provider", "requests", "errors", "input", "output", "cached", "reasoning", "avg", "ms"]
    assert [line.split()[:3] for line in lines[1:-1]] == [
        ["claude", "3", "0"], ["compat", "2", "1"], ["gemini", "1", "0"], ["total", "6", "1"],
    ]
    assert lines[-1] == f"source: local, {proxy.workdir / 'usage.db'}"
    time.sleep(1.1)
    recent = cliproxy_usage("--config", str(proxy.config_path), "--json", "--since", "1s")
    assert json.loads(recent.stdout)["total"]["requests"] == 0


def test_usage_can_be_turned_off(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, **{"usage-db": False}))
    call(proxy, "anthropic", "claude-test-1")
    proxy.wait_for_output("anthropic /v1/messages claude-test-1 via")
    assert not (proxy.workdir / "usage.db").exists()
    result = cliproxy_usage("--config", str(proxy.config_path))
    assert result.returncode == 1 and "usage-db is off" in result.stdout


def test_usage_writes_do_not_reload_the_config(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, debug=True))
    reading = f"cliproxy: reading {proxy.config_path}"
    proxy.wait_for_output(reading)
    time.sleep(0.5)
    settled = proxy.output().count(reading)
    for _ in range(20):
        call(proxy, "anthropic", "claude-test-1")
    wait_rows(proxy, 20)
    assert {p.name for p in proxy.workdir.iterdir()} >= {"usage.db", "usage.db-wal", "usage.db-shm"}
    time.sleep(1.0)  # five debounce periods
    assert proxy.output().count(reading) == settled
    # The watcher does see the config file itself.
    proxy.write_config(pool_config(fake, debug=True, **{"request-retry": 1}))
    deadline = time.monotonic() + 5
    while proxy.output().count(reading) == settled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.output().count(reading) > settled


# -- quota from the vendors' headers ------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


REST = 4  # seconds until the exhausted window resets

FAMILIES = {
    "anthropic-unified": (
        "anthropic", "claude-test-1", CLA_A, CLA_B,
        lambda reset: {
            "anthropic-ratelimit-unified-status": "allowed_warning",
            "anthropic-ratelimit-unified-5h-status": "rejected",
            "anthropic-ratelimit-unified-5h-utilization": "1.0",
            "anthropic-ratelimit-unified-5h-reset": str(int(reset)),
            "anthropic-ratelimit-unified-7d-utilization": "0.4",
            "anthropic-ratelimit-unified-7d-reset": str(int(reset + 86400)),
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
        },
        "5h",
    ),
    "anthropic-api-key": (
        "anthropic", "claude-test-1", CLA_A, CLA_B,
        lambda reset: {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": rfc3339(reset),
        },
        "requests",
    ),
    "openai": (
        "openai-chat", "compat-model", CMP_A, CMP_B,
        lambda reset: {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{reset - time.time():.3f}s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        "requests",
    ),
    "codex": (
        "openai-responses", "gpt-5", CDX_A, CDX_B,
        lambda reset: {
            "x-codex-primary-used-percent": "100.0",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(int(reset)),
            "x-codex-secondary-used-percent": "35",
            "x-codex-secondary-window-minutes": "10080",
        },
        "primary",
    ),
}


@pytest.fixture(scope="module")
def quota_proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(pool_config(fake, **{"routing": {"strategy": "fill-first"}}))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_exhausted_window_rests_the_credential_until_it_resets(quota_proxy, fake, family):
    api, model, first, second, headers, window = FAMILIES[family]
    # A whole second: most of these headers carry whole seconds, and a fraction cut off there
    # would end the rest before the loop below stops asking.
    reset = float(int(time.time()) + REST)
    fake.add_headers(first, headers(reset))
    start = len(quota_proxy.output())
    # fill-first: the first key serves, and its answer says its window is spent.
    assert call(quota_proxy, api, model).status_code == 200
    assert fake.keys_used() == [first]
    quota_proxy.wait_for_output(f"quota window {window} exhausted", start=start)
    served = 0
    while time.time() < reset - 1:
        assert call(quota_proxy, api, model).status_code == 200
        served += 1
    # Not one request was spent on the resting key, not even a 429.
    assert served >= 2 and fake.keys_used() == [first] + [second] * served
    fake.add_headers(first, {})
    time.sleep(max(0.0, reset - time.time()) + 1.1)
    assert call(quota_proxy, api, model).status_code == 200
    assert fake.keys_used()[-1] == first


def test_when_every_window_is_exhausted_the_client_is_told_when_without_an_upstream_call(fake, make_proxy):
    proxy = make_proxy(pool_config(fake))
    reset = time.time() + 60
    exhausted = FAMILIES["anthropic-unified"][4](reset)
    fake.add_headers(CLA_A, exhausted)
    fake.add_headers(CLA_B, exhausted)
    assert call(proxy, "anthropic", "claude-test-1").status_code == 200
    assert call(proxy, "anthropic", "claude-test-1").status_code == 200
    assert sorted(fake.keys_used()) == [CLA_A, CLA_B]
    response = call(proxy, "anthropic", "claude-test-1")
    assert response.status_code == 429
    assert 55 <= int(response.headers["retry-after"]) <= 60
    assert "quota window 5h exhausted" in response.json()["error"]["message"]
    assert len(fake.requests) == 2


def test_the_soft_threshold_steers_traffic_to_the_credential_with_headroom(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, **{"quota-soft-threshold": 0.9}))
    reset = str(int(time.time() + 3600))
    fake.add_headers(CLA_A, {"anthropic-ratelimit-unified-5h-utilization": "0.93", "anthropic-ratelimit-unified-5h-reset": reset})
    fake.add_headers(CLA_B, {"anthropic-ratelimit-unified-5h-utilization": "0.40", "anthropic-ratelimit-unified-5h-reset": reset})
    for _ in range(8):
        assert call(proxy, "anthropic", "claude-test-1").status_code == 200
    # Round-robin tries each once; from then on, the one with headroom serves.
    keys = fake.keys_used()
    assert sorted(keys[:2]) == [CLA_A, CLA_B] and keys[2:] == [CLA_B] * 6
    # Past the threshold too, B is no better than A: round-robin again, A (least used) first.
    fake.add_headers(CLA_B, {"anthropic-ratelimit-unified-5h-utilization": "0.97", "anthropic-ratelimit-unified-5h-reset": reset})
    call(proxy, "anthropic", "claude-test-1")
    call(proxy, "anthropic", "claude-test-1")
    assert fake.keys_used()[-1] == CLA_A


def test_quota_headers_can_be_ignored(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, **{"quota-headers": False, "routing": {"strategy": "fill-first"}}))
    fake.add_headers(CLA_A, FAMILIES["anthropic-unified"][4](time.time() + 60))
    for _ in range(3):
        call(proxy, "anthropic", "claude-test-1")
    assert fake.keys_used() == [CLA_A] * 3


# -- intercepted vendor CLIs ---------------------------------------------------------------------------


def intercepted(proxy) -> httpx.Response:
    """A Claude call as a CLI behind HTTPS_PROXY makes it: the vendor's host, the CLI's own key."""
    ca = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.proxy_port}", verify=ca, timeout=30) as client:
        return client.post(
            "https://api.anthropic.com/v1/messages",
            headers={"x-api-key": "sk-ant-the-cli-own-key", "anthropic-version": "2023-06-01"},
            json={"model": "claude-test-1", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        )


def test_intercepted_calls_are_rows_and_get_the_credential_header_only_when_all(fake, make_proxy):
    proxy = make_proxy(pool_config(fake, **{"credential-header": "listener"}))
    response = intercepted(proxy)
    assert response.status_code == 200
    assert "x-cliproxy-credential" not in response.headers
    assert "x-cliproxy-credential" in call(proxy, "anthropic", "claude-test-1").headers
    first, _ = wait_rows(proxy, 2)
    assert (first["client_key"], first["client_api"], first["provider"]) == ("intercepted", "anthropic", "claude")
    assert first["input_tokens"] == upstream_input_tokens_for(fake, 0)
    start = len(proxy.output())
    proxy.write_config(pool_config(fake, **{"credential-header": "all"}))
    proxy.wait_for_output("reloaded", start=start)
    assert intercepted(proxy).headers["x-cliproxy-credential"].startswith("claude-api-key[")
    assert "sk-ant-the-cli-own-key" not in proxy.output()


def test_usage_db_follows_config_edits(fake, make_proxy):
    proxy = make_proxy(pool_config(fake))
    call(proxy, "anthropic", "claude-test-1")
    wait_rows(proxy, 1)
    start = len(proxy.output())
    proxy.write_config(pool_config(fake, **{"usage-db": "kept/elsewhere.db"}))
    proxy.wait_for_output("reloaded", start=start)
    call(proxy, "anthropic", "claude-test-1")
    elsewhere = proxy.workdir / "kept" / "elsewhere.db"
    deadline = time.monotonic() + 10
    while not (elsewhere.exists() and _count(elsewhere) == 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(elsewhere) == 1
    assert len(rows(proxy)) == 1  # the first file got nothing more
    start = len(proxy.output())
    proxy.write_config(pool_config(fake, **{"usage-db": False}))
    proxy.wait_for_output("reloaded", start=start)
    call(proxy, "anthropic", "claude-test-1")
    time.sleep(0.5)
    assert _count(elsewhere) == 1 and len(rows(proxy)) == 1


def _count(path: Path) -> int:
    try:
        db = open_readonly(path)
    except sqlite3.Error:
        return 0
    with db:
        (count,) = db.execute("SELECT COUNT(*) FROM requests").fetchone()
    db.close()
    return count
