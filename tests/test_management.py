"""The management API's decisions without a proxy: admission, sessions, masking, auth-file names
and uploads, credential states, and the pool's run-time disabled set."""

from __future__ import annotations

import json

import pytest

from auth.credential import Credential
from auth.pool import Cooldown, Pool
from auth.quota import QuotaSnapshot, Window
from routing import management as m
from routing.config import Config, RemoteManagement
from routing.management import Gate, ManagementError

SECRET = "management-unit-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(**settings) -> tuple[Gate, Clock]:
    clock = Clock()
    g = Gate(clock)
    g.configure(RemoteManagement(**{"secret_key": SECRET, **settings}))
    return g, clock


def refused(g: Gate, peer: str, key: str | None, session: str | None = None, *, sessions_ok: bool = True) -> ManagementError:
    with pytest.raises(ManagementError) as e:
        g.admit(peer, key, session, sessions_ok=sessions_ok)
    return e.value


# -- admission -------------------------------------------------------------------------------------


def test_no_secret_turns_management_off_with_a_message_saying_how_to_enable():
    g = Gate()
    g.configure(RemoteManagement())
    error = refused(g, "127.0.0.1", SECRET)
    assert error.status == 404 and "remote-management.secret-key" in error.message


def test_a_bcrypt_hash_written_by_cliproxyapi_admits_its_key():
    import bcrypt

    hashed = bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()
    g = Gate()
    g.configure(RemoteManagement(secret_key=hashed))
    g.admit("127.0.0.1", SECRET, None, sessions_ok=False)
    error = refused(g, "127.0.0.1", hashed)  # the hash itself is not the key
    assert error.status == 401


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_callers_with_the_key_are_admitted(peer):
    g, _ = gate()
    g.admit(peer, SECRET, None, sessions_ok=False)


@pytest.mark.parametrize("peer", ["192.0.2.2", "10.0.0.1", "::ffff:192.0.2.2", "2001:db8::1", "", "not-an-address"])
def test_remote_callers_are_refused_unless_allowed_even_with_the_key(peer):
    g, _ = gate()
    error = refused(g, peer, SECRET)
    assert error.status == 403 and "allow-remote" in error.message
    allowed, _ = gate(allow_remote=True)
    allowed.admit(peer, SECRET, None, sessions_ok=False)


def test_missing_or_wrong_key_is_401():
    g, _ = gate()
    assert refused(g, "127.0.0.1", None).status == 401
    assert refused(g, "127.0.0.1", "wrong").status == 401
    assert refused(g, "127.0.0.1", "").status == 401
    assert refused(g, "127.0.0.1", SECRET + " ").status == 401


def test_five_wrong_keys_ban_a_remote_address_for_30_minutes_but_never_loopback():
    g, clock = gate(allow_remote=True)
    for _ in range(m.MAX_FAILURES):
        assert refused(g, "192.0.2.7", "wrong").status == 401
    banned = refused(g, "192.0.2.7", SECRET)
    assert banned.status == 403 and "30 min" in banned.message
    g.admit("192.0.2.8", SECRET, None, sessions_ok=False)  # another address is not affected
    clock.now += m.BAN_SECONDS + 1
    g.admit("192.0.2.7", SECRET, None, sessions_ok=False)
    for _ in range(m.MAX_FAILURES + 3):
        refused(g, "127.0.0.1", "wrong")
    g.admit("127.0.0.1", SECRET, None, sessions_ok=False)


def test_sessions_open_read_only_routes_expire_and_end_with_a_new_key():
    g, clock = gate()
    token = g.open_session()
    g.admit("127.0.0.1", None, token, sessions_ok=True)
    assert refused(g, "127.0.0.1", None, token, sessions_ok=False).status == 401
    assert refused(g, "127.0.0.1", None, "forged-session").status == 401
    clock.now += m.SESSION_SECONDS + 1
    assert refused(g, "127.0.0.1", None, token).status == 401
    fresh = g.open_session()
    g.configure(RemoteManagement(secret_key=SECRET))  # the same key: sessions stay
    g.admit("127.0.0.1", None, fresh, sessions_ok=True)
    g.configure(RemoteManagement(secret_key="another-key"))
    assert refused(g, "127.0.0.1", None, fresh).status == 401
    closed = g.open_session()
    g.close_session(closed)
    assert refused(g, "127.0.0.1", None, closed).status == 401


def test_sessions_are_bounded():
    g, _ = gate()
    tokens = [g.open_session() for _ in range(m.MAX_SESSIONS + 5)]
    assert sum(g.session_valid(t) for t in tokens) == m.MAX_SESSIONS
    assert g.session_valid(tokens[-1])


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-management-key": "k1"}, "k1"),
        ({"authorization": "Bearer k2"}, "k2"),
        ({"authorization": "bearer  k3 "}, "k3"),
        ({"authorization": "k4"}, "k4"),
        ({}, None),
    ],
)
def test_the_key_is_read_from_either_header(headers, key):
    assert m.presented_key(headers) == key


def test_the_session_cookie_is_found_among_others():
    assert m.session_cookie({"cookie": "a=1; cliproxy_session=tok; b=2"}) == "tok"
    assert m.session_cookie({"cookie": "cliproxy_session="}) is None
    assert m.session_cookie({}) is None


# -- the config, masked ---------------------------------------------------------------------------


def test_the_config_listing_masks_every_secret():
    config = Config.model_validate(
        {
            "api-keys": ["client-key-0123456789"],
            "claude-api-key": [{"api-key": "sk-ant-secret-0123456789", "headers": {"x-extra": "header-secret-value"}}],
            "openai-compatibility": [
                {"name": "svc", "base-url": "https://x.example", "api-key-entries": [{"api-key": "compat-secret-0123456789", "proxy-url": "http://user:proxy-pass@proxy:3128"}]}
            ],
            "proxy-url": "http://user:global-pass@proxy:3128",
            "upstream-overrides": {"api.anthropic.com": "https://gw-user:gw-pass@gw.example"},
            "remote-management": {"secret-key": SECRET},
        }
    )
    text = json.dumps(m.masked_config(config), ensure_ascii=False)
    for secret in ("client-key-0123456789", "sk-ant-secret-0123456789", "header-secret-value", "compat-secret-0123456789",
                   "proxy-pass", "global-pass", "gw-pass", SECRET):
        assert secret not in text
    listed = m.masked_config(config)
    assert listed["claude-api-key"][0]["api-key"] == "…6789"
    assert listed["remote-management"]["secret-key"] == "(set)"
    assert listed["proxy-url"] == "http://…@proxy:3128"
    assert listed["openai-compatibility"][0]["api-key-entries"][0]["api-key"] == "…6789"
    assert listed["port"] == config.port


# -- auth files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [None, "", "../x.json", "a/b.json", "a\\b.json", ".hidden.json", "x.txt", "x.json.tmp", ".json", "x\0.json",
     "line\nbreak.json", "x" * 300 + ".json"],
)
def test_bad_auth_file_names_are_refused(name):
    with pytest.raises(ManagementError) as e:
        m.auth_file_name(name)
    assert e.value.status == 400


@pytest.mark.parametrize("name", ["claude-me@example.com.json", "codex 1.json", "ünïcode.json"])
def test_good_auth_file_names_pass(name):
    assert m.auth_file_name(name) == name


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"access_token": "TOKVALUE"}', '"type"'),
        (b'{"type": "nope", "access_token": "TOKVALUE"}', "not supported"),
        (b'{"type": "claude"}', "neither access_token nor refresh_token"),
        (b'{"type": "claude", "access_token": 5}', "must be a string"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"type": "vertex", "service_account": {}}', "service_account"),
    ],
)
def test_uploads_are_checked_as_the_auth_directory_checks_files(tmp_path, raw, why):
    with pytest.raises(ManagementError) as e:
        m.validate_upload(tmp_path, "x.json", raw)
    assert e.value.status == 400 and why in e.value.message
    assert "TOKVALUE" not in e.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_good_upload_becomes_its_credential(tmp_path):
    token, cred = m.validate_upload(tmp_path, "me.json", b'{"type": "claude", "access_token": "tok-1", "email": "me@x"}')
    assert token.path == tmp_path / "me.json" and cred.id == "claude:me.json" and cred.email == "me@x"


# -- credential states -----------------------------------------------------------------------------


def api_key(n: int = 0) -> Credential:
    return Credential(provider="claude", source=f"claude-api-key[{n}]", secret=f"sk-ant-describe-{n:04d}")


def oauth(**kw) -> Credential:
    return Credential(provider="claude", source="me.json", secret="tok", kind="oauth", path="/a/me.json", **kw)


def describe(cred: Credential, **kw):
    args = {"now": 5000.0, "disabled": None, "rests": (), "refreshing": False, "refresh_failure": None, **kw}
    return m.describe(cred, **args)


def test_states_in_order_of_what_matters():
    cred = api_key()
    assert describe(cred)["state"] == "ready"
    rest = (None, Cooldown(0, "HTTP 401", kind="auth"), 1800.0)
    resting = describe(cred, rests=[rest, ("claude-x", Cooldown(0, "quota exhausted (HTTP 429)", kind="quota"), 30.0)])
    assert resting["state"] == "resting" and resting["until"] == 5000.0 + 1800.0
    assert "HTTP 401" in resting["detail"] and "30 min" in resting["detail"] and "1 more" in resting["detail"]
    assert [r["kind"] for r in resting["rests"]] == ["auth", "quota"]
    assert describe(cred, rests=[rest], disabled="management")["state"] == "disabled"
    assert describe(oauth(refresh_error="invalid_grant"), refreshing=True)["state"] == "refresh-failed"
    assert describe(oauth(), refreshing=True, rests=[rest])["state"] == "refreshing"
    failed = describe(oauth(), refresh_failure=("claude token endpoint answered HTTP 500", 5300.0))
    assert failed["state"] == "refresh-failed" and "HTTP 500" in failed["detail"] and "5 min" in failed["detail"]
    assert failed["refresh"] == {"refreshing": False, "error": "claude token endpoint answered HTTP 500",
                                 "terminal": False, "next_attempt": 5300.0}
    assert describe(oauth(), disabled="file")["detail"].startswith("disabled in its auth file")


def test_a_row_never_carries_the_secret():
    row = describe(api_key(7))
    assert "sk-ant-describe-0007" not in json.dumps(row)
    assert row["label"] == "claude-api-key[7] (…0007)"


# -- the pool's disabled set -----------------------------------------------------------------------


def test_a_disabled_credential_is_never_picked_and_comes_back_when_enabled():
    pool = Pool()
    a, b = api_key(1), api_key(2)
    pool.disable(a.id)
    picks = [pool.pick([(a, "m"), (b, "m")], "m").index for _ in range(4)]
    assert picks == [1, 1, 1, 1]
    only = pool.pick([(a, "m")], "m")
    assert only.index is None and only.skipped[0].reason == "disabled at run time"
    pool.enable(a.id)
    assert {pool.pick([(a, "m"), (b, "m")], "m").index for _ in range(4)} == {0, 1}


def test_the_disabled_set_survives_reloads_while_the_credential_exists():
    pool = Pool()
    a = api_key(1)
    pool.disable(a.id)
    pool.forget({a.id, "other"})
    assert pool.is_disabled(a.id)
    pool.forget({"other"})
    assert not pool.is_disabled(a.id)


def test_rests_lists_every_cooldown_of_one_credential():
    clock = Clock()
    pool = Pool(clock=clock)
    a, b = api_key(1), api_key(2)
    pool.failed(a, "m1", 429, 60)
    pool.failed(a, "m2", 503)
    pool.failed(b, "m1", 401)
    rests = {(model, c.kind): round(left) for model, c, left in pool.rests(a.id)}
    assert rests == {("m1", "quota"): 60, ("m2", "error"): 60}
    assert [(model, c.kind) for model, c, _ in pool.rests(b.id)] == [(None, "auth")]
    clock.now += 61
    assert pool.rests(a.id) == []


def test_rests_include_a_quota_window_reported_exhausted():
    clock = Clock()
    pool = Pool(clock=clock)
    a = api_key(1)
    pool.observe_quota(a, QuotaSnapshot(5000.0, (Window("5h", 1.0, None, None, 5600.0, "rejected"),)))
    [(model, cooldown, left)] = pool.rests(a.id)
    assert model is None and cooldown.kind == "quota" and "5h" in cooldown.reason and round(left) == 600


def test_quota_windows_are_listed_and_an_exhausted_one_rests_the_row():
    snapshot = QuotaSnapshot(
        4990.0,
        (
            Window("5h", 0.42, None, None, 9000.0, "allowed"),
            Window("requests", None, 0, 50, 5120.0, None),
        ),
    )
    row = describe(api_key(), quota=snapshot)
    assert row["state"] == "resting" and "requests" in row["detail"] and row["until"] == 5120.0
    windows = {w["name"]: w for w in row["quota"]["windows"]}
    assert windows["5h"] == {"name": "5h", "used": 0.42, "remaining": None, "limit": None,
                             "resets_at": 9000.0, "status": "allowed", "exhausted": False}
    assert windows["requests"]["used"] == 1.0 and windows["requests"]["exhausted"] is True
    assert row["quota"]["headroom"] == 0.0 and row["quota"]["exhausted_until"] == 5120.0
    fine = describe(api_key(), quota=QuotaSnapshot(4990.0, (Window("5h", 0.42, None, None, 9000.0, "allowed"),)))
    assert fine["state"] == "ready" and fine["quota"]["headroom"] == pytest.approx(0.58)


# -- the secret at rest ---------------------------------------------------------------------


CONFIG_TEXT = """\
# my proxy
port: 8317
remote-management:
  allow-remote: false   # loopback only
  secret-key: {value}  # set 2026-12-01
  disable-control-panel: false
api-keys:
  - secret-key-lookalike
"""


@pytest.mark.parametrize("value", [SECRET, f'"{SECRET}"', f"'{SECRET}'"])
def test_the_plain_key_is_replaced_by_its_hash_on_its_own_line_only(value):
    text = CONFIG_TEXT.format(value=value)
    changed = m.hash_secret_in_text(text, SECRET, "$2b$10$HASH")
    assert changed == text.replace(value, '"$2b$10$HASH"')
    assert "# set 2026-12-01" in changed and "# my proxy" in changed  # comments stay


def test_a_key_not_on_its_own_line_is_left_alone():
    flow_style = "remote-management: {secret-key: " + SECRET + "}\n"
    assert m.hash_secret_in_text(flow_style, SECRET, "$2b$10$HASH") is None
    elsewhere = "other:\n  secret-key: " + SECRET + "\n"
    assert m.hash_secret_in_text(elsewhere, SECRET, "$2b$10$HASH") is None


def test_a_hashed_key_admits_the_key_and_nothing_else():
    g = Gate()
    g.configure(RemoteManagement(secret_key=m.hash_secret(SECRET)))
    assert g.off is None
    assert not g.check_key("wrong")
    assert g.check_key(SECRET)
    assert g.check_key(SECRET)  # remembered: no second bcrypt round
    assert not g.check_key(SECRET + "x")


def test_sessions_survive_the_key_being_hashed_at_rest():
    g = Gate()
    g.configure(RemoteManagement(secret_key=SECRET))
    g.admit("127.0.0.1", SECRET, None, sessions_ok=False)
    token = g.open_session()
    g.configure(RemoteManagement(secret_key=m.hash_secret(SECRET)))  # the same key, hashed
    g.admit("127.0.0.1", None, token, sessions_ok=True)
    g.configure(RemoteManagement(secret_key=m.hash_secret("another key")))
    with pytest.raises(ManagementError):
        g.admit("127.0.0.1", None, token, sessions_ok=True)
