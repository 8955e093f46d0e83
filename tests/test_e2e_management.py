"""The management API, the status page's login and `cliproxy status`, through a real mitmdump:
every route with the key (both headers) and without it, remote callers, auth-file upload,
download and delete with the upload served at once, disabling a credential, and no secret in
what mitmproxy keeps."""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import pytest
from mitmproxy import io as mitm_io

from auth.tokens import format_time
from tests import clients
from tests.conftest import ROOT, Proxy, vendor_overrides
from tests.fakes.upstream import FakeUpstream

SECRET = "mgmt-e2e-secret-0123456789"
CLIENT_KEY = "mgmt-e2e-client-key-0123"
KEY_A = "sk-ant-mgmt-test-key-AAAA"
KEY_B = "sk-ant-mgmt-test-key-BBBB"
UPLOAD_ACCESS = "sk-ant-oat01-uploaded-access-token-UPL0"
UPLOAD_REFRESH = "sk-ant-ort01-uploaded-refresh-token-UPL0"
API = "/v0/management"
# Every route, with a request each method takes (the body matters only past admission).
ROUTES = [
    ("GET", "/config"),
    ("GET", "/auth-files"),
    ("POST", "/auth-files?name=x.json"),
    ("DELETE", "/auth-files?name=x.json"),
    ("GET", "/auth-files/download?name=x.json"),
    ("PATCH", "/auth-files/status"),
    ("GET", "/credentials"),
    ("PATCH", "/credentials/status"),
    ("GET", "/usage"),
    ("GET", "/errors"),
    ("GET", "/instances"),
]


def config(fake: FakeUpstream, **extra) -> dict:
    return {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": KEY_A}, {"api-key": KEY_B}],
        "upstream-overrides": vendor_overrides(fake),
        "remote-management": {"secret-key": SECRET},
        **extra,
    }


def api(proxy: Proxy, method: str, route: str, *, key: str | None = SECRET, bearer: bool = False,
        base: str | None = None, **kw) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["authorization" if bearer else "x-management-key"] = f"Bearer {key}" if bearer else key
    return httpx.request(method, (base or proxy.base_url) + API + route, headers=headers, timeout=30, **kw)


ask = functools.partial(clients.ask_claude, api_key=CLIENT_KEY)


def token_file(**extra) -> dict:
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=8)
    return {
        "type": "claude",
        "access_token": UPLOAD_ACCESS,
        "refresh_token": UPLOAD_REFRESH,
        "email": "uploaded@example.com",
        "expired": format_time(expires),
        "prefix": "up",
        **extra,
    }


def credential_ids(proxy: Proxy) -> dict[str, str]:
    """label -> id of every credential the proxy lists."""
    return {c["label"]: c["id"] for c in api(proxy, "GET", "/credentials").json()["credentials"]}


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy) -> Proxy:
    return make_module_proxy(config(fake))


# -- admission ---------------------------------------------------------------------------------------


def test_the_key_opens_the_api_in_either_header_without_a_client_key(proxy):
    for bearer in (False, True):
        for route in ("/config", "/auth-files", "/credentials", "/usage", "/errors", "/instances"):
            r = api(proxy, "GET", route, bearer=bearer)
            assert r.status_code == 200, (route, r.text)
            assert r.headers["content-type"] == "application/json"
    # X-Management-Key and a bare Authorization value, as CLIProxyAPI takes them.
    assert api(proxy, "GET", "/config", key=None, headers={"authorization": SECRET}).status_code == 200


def test_a_missing_or_wrong_key_is_a_401_on_every_route_and_changes_nothing(proxy, fake):
    ids = credential_ids(proxy)
    auth = proxy.workdir / "auth"
    (auth / "x.json").write_text(json.dumps(token_file(prefix="")))
    try:
        for method, route in ROUTES:
            body = json.dumps({"id": ids[f"claude-api-key[0] (…AAAA)"], "name": "x.json", "disabled": True})
            for key in (None, "wrong-key", SECRET[:-1], ""):
                r = api(proxy, method, route, key=key, content=body)
                assert r.status_code == 401, (method, route, key, r.text)
                assert "key" in r.json()["error"]
            # A client key of the pool is not a management key.
            r = api(proxy, method, route, key=CLIENT_KEY, bearer=True, content=body)
            assert r.status_code == 401
        assert (auth / "x.json").exists()
        assert all(c["state"] == "ready" for c in api(proxy, "GET", "/credentials").json()["credentials"])
    finally:
        (auth / "x.json").unlink()


def test_management_is_off_until_a_secret_is_set(fake, make_proxy):
    proxy = make_proxy(config(fake, **{"remote-management": {}}))
    for method, route in ROUTES:
        r = api(proxy, method, route)
        assert r.status_code == 404, (method, route)
        assert "remote-management.secret-key" in r.json()["error"]
    page = proxy.get("/")
    assert page.status_code == 404 and "remote-management.secret-key" in page.text
    # Set while running: on at once, no restart.
    mark = len(proxy.output())
    proxy.write_config(config(fake))
    proxy.wait_for_output("management API on /v0/management", start=mark)
    assert api(proxy, "GET", "/config").status_code == 200


# Remote callers (403 unless allow-remote) are decided on the peer address mitmproxy reports;
# tests/test_management.py covers that decision for IPv4, IPv6 and mapped addresses. No test
# sends traffic to a non-loopback address of this machine: the workplace allows loopback only.


# -- the config --------------------------------------------------------------------------------------


def test_the_config_is_listed_with_every_secret_masked(proxy):
    r = api(proxy, "GET", "/config")
    for secret in (SECRET, CLIENT_KEY, KEY_A, KEY_B):
        assert secret not in r.text
    listed = r.json()
    assert listed["claude-api-key"][0]["api-key"] == "…AAAA"
    assert listed["remote-management"]["secret-key"] == "(set)"
    assert listed["port"] == proxy.port


# -- auth files ----------------------------------------------------------------------------------------


def auth_dir_listing(proxy: Proxy) -> list[str]:
    return sorted(os.listdir(proxy.workdir / "auth"))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bad.json", b"{not json"),
        ("bad.json", b"[]"),
        ("bad.json", json.dumps({"access_token": UPLOAD_ACCESS}).encode()),
        ("bad.json", json.dumps({"type": "no-such-provider", "access_token": UPLOAD_ACCESS}).encode()),
        ("bad.json", json.dumps({"type": "claude", "refresh_token": 12}).encode()),
        ("../escape.json", json.dumps(token_file()).encode()),
        ("bad.txt", json.dumps(token_file()).encode()),
        (".hidden.json", json.dumps(token_file()).encode()),
        ("", json.dumps(token_file()).encode()),
    ],
)
def test_a_malformed_upload_is_a_400_and_writes_nothing(proxy, name, content):
    before = auth_dir_listing(proxy)
    r = api(proxy, "POST", "/auth-files", params={"name": name}, content=content)
    assert r.status_code == 400, r.text
    assert r.json()["error"] and UPLOAD_ACCESS not in r.text
    assert auth_dir_listing(proxy) == before
    assert not (proxy.workdir / "escape.json").exists()


def test_an_uploaded_file_serves_at_once_and_can_be_listed_downloaded_and_deleted(proxy, fake):
    content = json.dumps(token_file()).encode()
    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
    started = time.monotonic()
    r = api(proxy, "POST", "/auth-files", params={"name": "uploaded.json"}, content=content)
    uploaded_in = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "name": "uploaded.json", "id": "claude:uploaded.json", "loaded": True}
    client.messages.create(model="up/claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    served_in = time.monotonic() - started
    assert fake.requests[-1].api_key == UPLOAD_ACCESS
    assert served_in < 1.0, f"the upload was served after {served_in:.2f}s"
    print(f"upload answered in {uploaded_in * 1000:.0f} ms; first request served on it {served_in * 1000:.0f} ms after the upload began")
    path = proxy.workdir / "auth" / "uploaded.json"
    assert json.loads(path.read_text()) == json.loads(content)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [n for n in auth_dir_listing(proxy) if n.startswith(".")] == []  # no temp file left

    listing = api(proxy, "GET", "/auth-files")
    assert UPLOAD_ACCESS not in listing.text and UPLOAD_REFRESH not in listing.text
    entry = next(f for f in listing.json()["files"] if f["name"] == "uploaded.json")
    assert entry["type"] == "claude" and entry["email"] == "uploaded@example.com" and entry["state"] == "ready"
    assert entry["label"] == "auth file uploaded.json" and entry["expires_at"] > time.time() + 7 * 3600
    assert entry["size"] == path.stat().st_size

    download = api(proxy, "GET", "/auth-files/download", params={"name": "uploaded.json"})
    assert download.status_code == 200
    assert download.content == path.read_bytes()
    assert "uploaded.json" in download.headers["content-disposition"]
    # The session cookie of the status page does not download files: only the key does.
    assert api(proxy, "GET", "/auth-files/download", key=None, params={"name": "uploaded.json"}).status_code == 401

    r = api(proxy, "DELETE", "/auth-files", params={"name": "uploaded.json"})
    assert r.status_code == 200 and r.json()["deleted"] == ["uploaded.json"]
    assert not path.exists()
    with pytest.raises(anthropic.NotFoundError):
        ask(proxy, "up/claude-test-1")
    assert api(proxy, "DELETE", "/auth-files", params={"name": "uploaded.json"}).status_code == 404
    assert api(proxy, "GET", "/auth-files/download", params={"name": "uploaded.json"}).status_code == 404


def test_a_multipart_upload_takes_the_file_name_and_replaces_an_existing_file(proxy, fake):
    first = api(proxy, "POST", "/auth-files", files={"file": ("multi.json", json.dumps(token_file()).encode(), "application/json")})
    assert first.status_code == 200 and first.json()["name"] == "multi.json"
    newer = token_file(access_token="sk-ant-oat01-replaced-access-token-NEW1")
    second = api(proxy, "POST", "/auth-files", files={"file": ("multi.json", json.dumps(newer).encode(), "application/json")})
    assert second.status_code == 200
    ask(proxy, "up/claude-test-1")
    assert fake.requests[-1].api_key == "sk-ant-oat01-replaced-access-token-NEW1"
    assert api(proxy, "DELETE", "/auth-files", content=json.dumps({"names": ["multi.json"]})).status_code == 200


def test_an_invalid_file_in_the_auth_dir_is_listed_with_its_problem(proxy):
    auth = proxy.workdir / "auth"
    (auth / "broken.json").write_text('{"type": "claude"')
    try:
        deadline = time.monotonic() + 5
        while True:
            files = api(proxy, "GET", "/auth-files").json()["files"]
            broken = next((f for f in files if f["name"] == "broken.json"), None)
            if broken or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert broken is not None and broken["state"] == "invalid" and "not valid JSON" in broken["status_message"]
    finally:
        (auth / "broken.json").unlink()


# -- credentials ------------------------------------------------------------------------------------


def test_a_disabled_credential_gets_no_requests_until_enabled(proxy, fake):
    ids = credential_ids(proxy)
    a = ids["claude-api-key[0] (…AAAA)"]
    r = api(proxy, "PATCH", "/credentials/status", json={"id": a, "disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    try:
        for _ in range(6):
            ask(proxy)
        assert fake.keys_used() == [KEY_B] * 6
        row = next(c for c in api(proxy, "GET", "/credentials").json()["credentials"] if c["id"] == a)
        assert row["state"] == "disabled" and row["disabled"] == "management"
        # Survives a config reload while the key stays in the config.
        mark = len(proxy.output())
        proxy.write_config(config(fake, **{"request-retry": 2}))
        proxy.wait_for_output("reloaded", start=mark)
        ask(proxy)
        assert fake.keys_used()[-1] == KEY_B
    finally:
        assert api(proxy, "PATCH", "/credentials/status", json={"id": a, "disabled": False}).status_code == 200
    fake.clear()
    for _ in range(4):
        ask(proxy)
    assert sorted(fake.keys_used()) == [KEY_A, KEY_A, KEY_B, KEY_B]


def test_every_credential_disabled_says_so(proxy, fake):
    ids = list(credential_ids(proxy).values())
    try:
        for i in ids:
            api(proxy, "PATCH", "/credentials/status", json={"id": i, "disabled": True})
        with pytest.raises(anthropic.APIStatusError) as e:
            ask(proxy)
        assert e.value.status_code == 503 and "disabled at run time" in e.value.message
        assert fake.requests == []
    finally:
        for i in ids:
            api(proxy, "PATCH", "/credentials/status", json={"id": i, "disabled": False})


def test_an_auth_file_is_disabled_by_name_as_cliproxyapi_does(proxy, fake):
    api(proxy, "POST", "/auth-files", params={"name": "switch.json"}, content=json.dumps(token_file()).encode())
    try:
        r = api(proxy, "PATCH", "/auth-files/status", json={"name": "switch.json", "disabled": True})
        assert r.status_code == 200 and r.json()["id"] == "claude:switch.json"
        with pytest.raises(anthropic.APIStatusError) as e:
            ask(proxy, "up/claude-test-1")
        assert e.value.status_code == 503
        files = api(proxy, "GET", "/auth-files").json()["files"]
        assert next(f for f in files if f["name"] == "switch.json")["disabled"] is True
        api(proxy, "PATCH", "/auth-files/status", json={"name": "switch.json", "disabled": False})
        ask(proxy, "up/claude-test-1")
        assert fake.requests[-1].api_key == UPLOAD_ACCESS
    finally:
        api(proxy, "DELETE", "/auth-files", params={"name": "switch.json"})


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("/credentials/status", {"id": "claude:no-such", "disabled": True}, 404),
        ("/credentials/status", {"id": 5, "disabled": True}, 400),
        ("/credentials/status", {"id": "x", "disabled": "yes"}, 400),
        ("/auth-files/status", {"name": "../x.json", "disabled": True}, 400),
        ("/auth-files/status", {"name": "missing.json", "disabled": True}, 404),
        ("/auth-files/status", {"name": "off-in-file.json", "disabled": False}, 409),
    ],
)
def test_bad_switches_are_refused_in_json(proxy, route, body, status):
    api(proxy, "POST", "/auth-files", params={"name": "off-in-file.json"},
        content=json.dumps(token_file(disabled=True)).encode())
    try:
        r = api(proxy, "PATCH", route, json=body)
        assert r.status_code == status and r.json()["error"]
    finally:
        api(proxy, "DELETE", "/auth-files", params={"name": "off-in-file.json"})


def test_unknown_routes_and_methods(proxy):
    r = api(proxy, "GET", "/nothing")
    assert r.status_code == 404 and "no such management route" in r.json()["error"]
    r = api(proxy, "PUT", "/credentials")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_resting_and_refused_credentials_say_why_and_until_when(fake, make_proxy):
    proxy = make_proxy(config(fake), start=False)
    (proxy.workdir / "auth").mkdir()
    (proxy.workdir / "auth" / "refused.json").write_text(
        json.dumps(token_file(expired="2026-01-01T00:00:00Z",
                              cliproxy_refresh_error={"error": "invalid_grant", "at": "2026-01-01T00:00:00Z"}))
    )
    proxy.start()
    fake.fail(KEY_A, 429, headers={"retry-after": "90"}, times=1)
    fake.fail(KEY_B, 429, headers={"retry-after": "90"}, times=1)
    with pytest.raises(anthropic.RateLimitError):
        ask(proxy)
    data = api(proxy, "GET", "/credentials").json()
    rows = {c["label"]: c for c in data["credentials"]}
    resting = rows["claude-api-key[0] (…AAAA)"]
    assert resting["state"] == "resting" and "quota exhausted (HTTP 429)" in resting["detail"]
    assert resting["rests"][0]["kind"] == "quota" and resting["rests"][0]["model"] == "claude-test-1"
    assert 80 < resting["until"] - data["now"] <= 90
    refused = rows["auth file refused.json"]
    assert refused["state"] == "refresh-failed" and "invalid_grant" in refused["detail"]
    assert refused["refresh"]["terminal"] is True


def wait_for(condition, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)
    return found


def test_usage_and_errors_by_model_credential_and_client_key(fake, make_proxy):
    proxy = make_proxy(config(fake, **{"api-keys": ["other-client-key-0000", CLIENT_KEY]}))
    started = time.time()
    for _ in range(3):
        ask(proxy)
    ask(proxy, "claude-test-2")
    fake.fail(KEY_A, 429, headers={"retry-after": "60"}, times=1)
    fake.fail(KEY_B, 429, headers={"retry-after": "60"}, times=1)
    with pytest.raises(anthropic.RateLimitError):
        ask(proxy, "claude-test-3")

    def totals(**params) -> list[dict]:
        r = api(proxy, "GET", "/usage", params=params)
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    by_model = wait_for(lambda: {r["key"]: r for r in totals(by="model")} if len(totals(by="model")) == 3 else None,
                        "five requests in usage")
    assert {k: (r["requests"], r["errors"]) for k, r in by_model.items()} == {
        "claude-test-1": (3, 0), "claude-test-2": (1, 0), "claude-test-3": (1, 1)}
    assert by_model["claude-test-1"]["input_tokens"] > 0
    by_key = {r["key"]: r["requests"] for r in totals(by="client-key")}
    assert by_key == {"key-2": 5}  # the client key's label (its place in api-keys), never the key
    by_credential = {r["key"]: r["requests"] for r in totals(by="credential")}
    assert sum(by_credential.values()) == 5 and set(by_credential) <= {"claude-api-key[0] (…AAAA)", "claude-api-key[1] (…BBBB)"}
    buckets = api(proxy, "GET", "/usage", params={"by": "model", "since": "3600", "bucket": "60"}).json()
    assert buckets["bucket_seconds"] == 60 and 3590 < buckets["until"] - buckets["since"] < 3610
    assert all(r["bucket"] % 60 == 0 and r["bucket"] >= started - 60 for r in buckets["rows"])
    assert sum(r["requests"] for r in buckets["rows"]) == 5
    assert totals(since=str(time.time() + 10)) == []

    errors = api(proxy, "GET", "/errors", params={"limit": "10"}).json()["errors"]
    assert len(errors) == 1 and errors[0]["model"] == "claude-test-3" and errors[0]["status"] == 429
    assert errors[0]["error"]
    rows = {c["label"]: c for c in api(proxy, "GET", "/credentials").json()["credentials"]}
    hour = [rows[label]["last_hour"] for label in ("claude-api-key[0] (…AAAA)", "claude-api-key[1] (…BBBB)")]
    assert sum(h["requests"] for h in hour) == 5 and sum(h["errors"] for h in hour) == 1
    text = json.dumps([totals(by="client-key"), errors])
    assert CLIENT_KEY not in text and KEY_A not in text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "colour"}, "by must be one of"),
        ({"since": "yesterday"}, "since must be a number"),
        ({"since": "-5"}, "non-negative"),
        ({"bucket": "0"}, "at least 1 second"),
        ({"bucket": "1", "since": "86400"}, "at most"),
    ],
)
def test_bad_usage_queries_are_400(proxy, params, message):
    r = api(proxy, "GET", "/usage", params=params)
    assert r.status_code == 400 and message in r.json()["error"]


def test_bad_error_limits_are_400(proxy):
    for limit in ("0", "lots", "100000"):
        assert api(proxy, "GET", "/errors", params={"limit": limit}).status_code == 400


def test_usage_routes_say_when_usage_is_off(fake, make_proxy):
    proxy = make_proxy(config(fake, **{"usage-db": False}))
    for route in ("/usage", "/errors"):
        r = api(proxy, "GET", route)
        assert r.status_code == 404 and "usage-db is off" in r.json()["error"]
    assert all(c["last_hour"] is None for c in api(proxy, "GET", "/credentials").json()["credentials"])


# -- the status page's login ---------------------------------------------------------------------------


def test_the_status_page_logs_in_with_a_form_and_keeps_only_a_session_cookie(proxy):
    page = proxy.get("/")
    assert page.status_code == 401 and "<form" in page.text and SECRET not in page.text
    wrong = proxy.post("/status/login", data={"key": "wrong"})
    assert wrong.status_code == 401 and "Wrong key" in wrong.text
    login = proxy.post("/status/login", data={"key": SECRET})
    assert login.status_code == 303 and login.headers["location"] == "/status"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and SECRET not in cookie
    session = login.cookies["cliproxy_session"]
    jar = {"cliproxy_session": session}
    page = httpx.get(proxy.base_url + "/status", cookies=jar, timeout=10)
    assert page.status_code == 200 and SECRET not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert httpx.get(proxy.base_url + API + "/credentials", cookies=jar, timeout=10).status_code == 200
    # Read-only: the cookie changes nothing.
    ids = list(credential_ids(proxy).values())
    r = httpx.patch(proxy.base_url + API + "/credentials/status", cookies=jar, json={"id": ids[0], "disabled": True}, timeout=10)
    assert r.status_code == 401
    by_query = httpx.get(proxy.base_url + "/status", params={"key": SECRET}, timeout=10)
    assert by_query.status_code == 303 and by_query.headers["location"] == "/status"
    httpx.get(proxy.base_url + "/status/logout", cookies=jar, timeout=10)
    assert httpx.get(proxy.base_url + API + "/credentials", cookies=jar, timeout=10).status_code == 401


# -- what mitmproxy keeps --------------------------------------------------------------------------------


def test_no_secret_in_saved_flows_or_the_log_and_flows_show_the_clients_request(fake, make_proxy, tmp_path):
    flows = tmp_path / "flows.mitm"
    # Streamed bodies stored too: the answers that carry a secret are masked after they went out.
    proxy = make_proxy(config(fake, debug=True), extra_args=(
        "--set", "flow_detail=4", "--set", "store_streamed_bodies=true", "-w", str(flows)))
    api(proxy, "POST", "/auth-files", params={"name": "kept.json"}, content=json.dumps(token_file()).encode())
    api(proxy, "POST", "/auth-files", files={"file": ("kept2.json", json.dumps(token_file()).encode(), "application/json")})
    assert UPLOAD_ACCESS.encode() in api(proxy, "GET", "/auth-files/download", params={"name": "kept.json"}).content
    api(proxy, "GET", "/config", bearer=True)
    login = proxy.post("/status/login", data={"key": SECRET})
    session = login.cookies["cliproxy_session"]
    httpx.get(proxy.base_url + API + "/credentials", cookies={"cliproxy_session": session}, timeout=10)
    httpx.get(proxy.base_url + "/status", params={"key": SECRET}, timeout=10)
    ask(proxy)
    ask(proxy, "up/claude-test-1")
    proxy.stop()

    output = proxy.output()
    saved = flows.read_bytes()
    for secret in (SECRET, CLIENT_KEY, KEY_A, KEY_B, UPLOAD_ACCESS, UPLOAD_REFRESH, session):
        assert secret not in output, secret
        assert secret.encode() not in saved, secret

    with flows.open("rb") as f:
        recorded = [fl for fl in mitm_io.FlowReader(f).stream() if fl.type == "http"]
    served = [fl for fl in recorded if fl.metadata.get("cliproxy", {}).get("provider")]
    assert len(served) == 2
    for fl in served:
        # The flow shows the upstream request; the client's own line is in the metadata and the
        # comment, and the flow list marks the provider.
        assert fl.metadata["cliproxy"]["client_request"] == "POST /v1/messages"
        assert fl.comment.startswith("POST /v1/messages | cliproxy: claude via ")
        assert fl.marked == ":orange_circle:"
    download = next(fl for fl in recorded if "/auth-files/download" in fl.request.path)
    assert download.response.status_code == 200 and download.request.host == "cliproxy.invalid"
    assert download.comment == f"cliproxy management: GET {API}/auth-files/download"


# -- cliproxy status ------------------------------------------------------------------------------------


def cliproxy(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("CLIPROXY_MANAGEMENT_KEY", None) if env is None else None
    return subprocess.run([sys.executable, "-m", "routing.cli", *args], capture_output=True, text=True,
                          timeout=60, env=environment, cwd=ROOT)


def test_cliproxy_status_prints_the_credential_table(proxy, fake):
    fake.add_headers(KEY_A, {"anthropic-ratelimit-unified-5h-utilization": "0.42",
                             "anthropic-ratelimit-unified-5h-reset": str(int(time.time() + 3600))})
    ask(proxy)
    ask(proxy)
    assert KEY_A in fake.keys_used()
    ids = credential_ids(proxy)
    api(proxy, "PATCH", "/credentials/status", json={"id": ids["claude-api-key[1] (…BBBB)"], "disabled": True})
    # The config keeps only the key's hash now: without the key, the command says how to give it.
    refused = cliproxy("status", "--config", str(proxy.config_path))
    assert refused.returncode == 1 and "keeps only the key's bcrypt hash" in refused.stderr
    try:
        result = cliproxy("status", "--config", str(proxy.config_path), env={"CLIPROXY_MANAGEMENT_KEY": SECRET})
    finally:
        api(proxy, "PATCH", "/credentials/status", json={"id": ids["claude-api-key[1] (…BBBB)"], "disabled": False})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "CREDENTIAL", "STATE", "QUOTA", "LAST", "HOUR"]
    first = next(line for line in lines if "claude-api-key[0] (…AAAA)" in line)
    second = next(line for line in lines if "claude-api-key[1] (…BBBB)" in line)
    assert first.split()[0] == "claude" and " ready " in first and " 5h 42% " in first
    assert re.search(r"\d+ req, \d+ err$", first)
    assert " disabled " in second
    assert "disabled at run time" in result.stdout
    for secret in (SECRET, KEY_A, KEY_B):
        assert secret not in result.stdout


def test_cliproxy_status_takes_url_and_key_from_the_command_line_or_environment(proxy, tmp_path):
    empty = tmp_path / "none.yaml"
    by_flag = cliproxy("--config", str(empty), "status", "--url", proxy.base_url, "--secret", SECRET)
    assert by_flag.returncode == 0 and "claude-api-key[0]" in by_flag.stdout
    by_env = cliproxy("--config", str(empty), "status", "--url", proxy.base_url, env={"CLIPROXY_MANAGEMENT_KEY": SECRET})
    assert by_env.returncode == 0 and "claude-api-key[0]" in by_env.stdout
    wrong = cliproxy("--config", str(empty), "status", "--url", proxy.base_url, "--secret", "wrong")
    assert wrong.returncode == 1 and "401" in wrong.stderr and "wrong management key" in wrong.stderr
    none = cliproxy("--config", str(empty), "status", "--url", proxy.base_url)
    assert none.returncode == 1 and "secret-key" in none.stderr
    gone = cliproxy("--config", str(empty), "status", "--url", "http://127.0.0.1:9", "--secret", SECRET)
    assert gone.returncode == 1 and "is it running" in gone.stderr


def test_the_key_is_kept_as_a_bcrypt_hash_at_rest_and_still_opens_the_api(fake, make_proxy):
    """As CLIProxyAPI does: the plain key in config.yaml becomes its bcrypt hash on load (that
    one line; comments and the rest stay), and the key itself keeps working, across reloads."""
    proxy = make_proxy(config(fake), start=False)
    text = proxy.config_path.read_text().replace(
        f"secret-key: {SECRET}", f"secret-key: {SECRET}   # the team's key"
    )
    text = "# written by hand\n" + text
    proxy.config_path.write_text(text)
    proxy.config_path.chmod(0o600)
    proxy.start()
    proxy.wait_for_output("is now kept as a bcrypt hash")
    stored = proxy.config_path.read_text()
    assert SECRET not in stored and SECRET not in proxy.output()
    (line,) = [line for line in stored.splitlines() if "secret-key:" in line]
    assert line.strip().startswith('secret-key: "$2b$') and line.endswith("# the team's key")
    assert stored.startswith("# written by hand\n")
    assert proxy.config_path.stat().st_mode & 0o777 == 0o600
    assert api(proxy, "GET", "/credentials").status_code == 200
    assert api(proxy, "GET", "/credentials", bearer=True).status_code == 200
    assert api(proxy, "GET", "/credentials", key="wrong").status_code == 401
    # A restart reads the hash: the key still opens the API.
    proxy.stop()
    proxy.start()
    assert api(proxy, "GET", "/credentials").status_code == 200
    assert api(proxy, "GET", "/credentials", key=line.split('"')[1]).status_code == 401  # not the hash
