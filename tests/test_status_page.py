"""The status page rendered by headless Chromium against a real mitmdump: one row per credential
with the state the fake upstream produced, hostile labels shown as text, and a screenshot kept
as a test artefact.

Needs a `chromium` (or `chromium-browser`) binary; scripts/test installs Debian's package when
it can. Without one the tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import Proxy, vendor_overrides
from tests.fakes.upstream import FakeUpstream
from tests.test_e2e_management import API, CLIENT_KEY, KEY_A, KEY_B, SECRET, token_file

GEMINI_KEY = "AIza-status-page-test-key-GGGG"
HOSTILE_NAME = "<i>evil.json"
HOSTILE_EMAIL = '<img src=x onerror="document.body.dataset.pwned=1">@example.com'


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium binary under CI=true: scripts/test installs it (apt-get install chromium)")
        pytest.skip("no chromium binary: install Debian's chromium package to render the status page")
    return found


def run_chromium(url: str, profile: Path, *extra: str) -> str:
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # Time enough for the page's script to fetch the API and draw (virtual: no real wait).
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Page(HTMLParser):
    """The parts of the dumped DOM the tests look at."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict] = []
        self.body: dict[str, str | None] = {}
        self.models: dict[str, int] = {}
        self.errors: list[str] = []
        self._row: dict | None = None
        self._cell: str | None = None
        self._error: list[str] | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        if tag == "tr" and "cred" in classes:
            self._row = {"id": a["data-id"], "state": a["data-state"], "cells": {}, "windows": {}, "tags": [], "hour": None}
            self.rows.append(self._row)
        elif tag == "tr" and "error" in classes:
            self._error = []
        elif self._row is not None:
            self._row["tags"].append(tag)
            if tag == "td":
                self._cell = classes[0] if classes else ""
                if self._cell == "hour" and "data-requests" in a:
                    self._row["hour"] = (int(a["data-requests"]), int(a["data-errors"]))
            elif tag == "div" and "window" in classes:
                self._row["windows"][a["data-window"]] = a["data-used"]
        if tag == "div" and "model" in classes:
            self.models[a["data-model"]] = int(a["data-requests"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            if self._error is not None:
                self.errors.append(" ".join(self._error))
            self._row, self._cell, self._error = None, None, None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            cells = self._row["cells"]
            cells[self._cell] = cells.get(self._cell, "") + data
        if self._error is not None and data.strip():
            self._error.append(data.strip())

    def row(self, label_part: str) -> dict:
        return next(r for r in self.rows if label_part in r["cells"]["label"])


@pytest.fixture(scope="module")
def pool(fake: FakeUpstream, make_module_proxy) -> Proxy:
    """Two Claude keys (the first one's 5h window used up, the second one's reporting 42% used),
    a Gemini key disabled at run time (a request for Gemini fails), a login whose refresh token
    was refused, and one with a hostile name and e-mail."""
    chromium()
    proxy = make_module_proxy(
        {
            "api-keys": [CLIENT_KEY],
            "claude-api-key": [{"api-key": KEY_A}, {"api-key": KEY_B}],
            "gemini-api-key": [{"api-key": GEMINI_KEY}],
            "routing": {"strategy": "fill-first"},
            "upstream-overrides": vendor_overrides(fake),
            "remote-management": {"secret-key": SECRET},
        },
        start=False,
    )
    auth = proxy.workdir / "auth"
    auth.mkdir()
    (auth / "refused.json").write_text(json.dumps(token_file(
        prefix="", expired="2026-01-01T00:00:00Z", cliproxy_refresh_error={"error": "invalid_grant", "at": "2026-01-01T00:00:00Z"},
    )))
    (auth / HOSTILE_NAME).write_text(json.dumps(token_file(prefix="evil", email=HOSTILE_EMAIL)))
    proxy.start()
    fake.clear()
    now = time.time()
    fake.add_headers(KEY_A, {
        "anthropic-ratelimit-unified-5h-status": "rejected",
        "anthropic-ratelimit-unified-5h-utilization": "1.0",
        "anthropic-ratelimit-unified-5h-reset": str(int(now + 7200)),
        "anthropic-ratelimit-unified-7d-utilization": "0.31",
        "anthropic-ratelimit-unified-7d-reset": str(int(now + 5 * 86400)),
    })
    fake.add_headers(KEY_B, {
        "anthropic-ratelimit-unified-5h-utilization": "0.42",
        "anthropic-ratelimit-unified-5h-reset": str(int(now + 3600)),
    })
    fake.fail(KEY_A, 429, times=1)
    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
    for _ in range(3):
        client.messages.create(model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert fake.keys_used() == [KEY_A, KEY_B, KEY_B, KEY_B]
    headers = {"x-management-key": SECRET}
    ids = {c["label"]: c["id"] for c in httpx.get(proxy.base_url + API + "/credentials", headers=headers).json()["credentials"]}
    gemini = next(i for label, i in ids.items() if label.startswith("gemini-api-key[0]"))
    httpx.patch(proxy.base_url + API + "/credentials/status", headers=headers, json={"id": gemini, "disabled": True})
    failed = httpx.post(proxy.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"},
                        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]})
    assert failed.status_code == 503
    deadline = time.monotonic() + 5
    while len(httpx.get(proxy.base_url + API + "/errors", headers=headers).json()["errors"]) < 1:
        assert time.monotonic() < deadline, "the failed request never reached usage"
        time.sleep(0.1)
    return proxy


def test_the_page_shows_one_row_per_credential_with_its_state(pool, tmp_path):
    page = Page(run_chromium(f"{pool.base_url}/status?key={SECRET}", tmp_path / "profile", "--dump-dom"))
    assert page.body.get("data-loaded") == "true", "the page's script did not load the API"
    listed = httpx.get(pool.base_url + API + "/credentials", headers={"x-management-key": SECRET}).json()["credentials"]
    assert sorted(r["id"] for r in page.rows) == sorted(c["id"] for c in listed)
    assert len(page.rows) == 5

    resting = page.row("claude-api-key[0] (…AAAA)")
    assert resting["state"] == "resting" and resting["cells"]["provider"] == "claude"
    assert "quota window 5h exhausted" in resting["cells"]["state"]
    # The time left (two hours, less the test's own time), counted down by the page.
    assert re.search(r"\b(11[89]|120) min", resting["cells"]["state"]), resting["cells"]["state"]
    assert resting["windows"] == {"5h": "100", "7d": "31"}
    ready = page.row("claude-api-key[1] (…BBBB)")
    assert ready["state"] == "ready" and ready["windows"] == {"5h": "42"}
    assert "42% used" in ready["cells"]["quota"] and "resets in" in ready["cells"]["quota"]
    # Usage counts client requests by the credential that answered them (the 429 failed over).
    assert resting["hour"] == (0, 0) and ready["hour"] == (3, 0)
    disabled = page.row("gemini-api-key[0]")
    assert disabled["state"] == "disabled" and "disabled at run time" in disabled["cells"]["state"]
    refused = page.row("auth file refused.json")
    assert refused["state"] == "refresh-failed" and "invalid_grant" in refused["cells"]["state"]
    assert refused["windows"] == {} and "no quota reported" in refused["cells"]["quota"]

    # Usage over the last 24 hours, per model, and the request that failed.
    assert page.models == {"claude-test-1": 3, "gemini-2.5-flash": 1}
    assert len(page.errors) == 1 and "gemini-2.5-flash" in page.errors[0] and "503" in page.errors[0]


def test_hostile_labels_are_shown_as_text(pool, tmp_path):
    dom = run_chromium(f"{pool.base_url}/status?key={SECRET}", tmp_path / "profile", "--dump-dom")
    page = Page(dom)
    evil = page.row("auth file <i>evil.json")
    assert HOSTILE_EMAIL in evil["cells"]["label"]
    assert "i" not in evil["tags"] and "img" not in evil["tags"]
    assert "data-pwned" not in dom
    assert SECRET not in dom


def test_a_screenshot_of_the_page_is_kept(pool, tmp_path):
    shot = tmp_path / "status-page.png"
    run_chromium(f"{pool.base_url}/status?key={SECRET}", tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")


def test_without_a_session_the_page_is_the_login_form(pool, tmp_path):
    dom = run_chromium(f"{pool.base_url}/status", tmp_path / "profile", "--dump-dom")
    assert "<form" in dom and 'name="key"' in dom and "cred" not in dom
