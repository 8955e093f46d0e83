"""The auth directory as credentials: CLIProxyAPI's token files of every type, generic fields,
broken files, and rescans after add / modify / delete / rename."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from auth.credential import Credential
from auth.store import REFRESH_ERROR_KEY, AuthStore, credential_from_token
from auth.tokens import TokenFile, TokenFileError, load_token_file, save_token_file
from routing.router import Router

SAMPLES = Path(__file__).parent / "fixtures" / "cliproxyapi-auth"


def _load(name: str) -> Credential:
    return credential_from_token(load_token_file(SAMPLES / name))


def test_every_cliproxyapi_sample_loads_as_it_is(tmp_path):
    shutil.copytree(SAMPLES, tmp_path / "auth")
    store = AuthStore()
    result = store.set_directory(tmp_path / "auth")
    creds = {c.source: c for c in store.credentials()}
    assert sorted(result.added) == sorted(c.id for c in creds.values())
    assert {c.provider for c in creds.values()} == {
        "claude", "codex", "antigravity", "kimi", "xai", "vertex", "gemini-cli", "qwen", "iflow"
    }
    # Nothing was rewritten by loading.
    for path in SAMPLES.iterdir():
        assert (tmp_path / "auth" / path.name).read_bytes() == path.read_bytes()


def test_claude_sample():
    c = _load("claude-user@example.com.json")
    assert (c.provider, c.kind, c.email) == ("claude", "oauth", "user@example.com")
    assert c.secret == "sk-ant-oat01-SAMPLE-claude-access-token"
    assert c.id == "claude:claude-user@example.com.json"
    assert c.expires_at == pytest.approx(1763632800.0)  # 2025-11-20T18:00:00+08:00


def test_codex_sample_reads_the_account_id():
    c = _load("codex-3f2a9c1b-user@example.com-plus.json")
    assert (c.provider, c.account_id) == ("codex", "9a8b7c6d-1111-2222-3333-444455556666")


def test_codex_account_id_from_the_id_token_when_the_field_is_missing(tmp_path):
    data = json.loads((SAMPLES / "codex-3f2a9c1b-user@example.com-plus.json").read_text())
    del data["account_id"]
    path = tmp_path / "codex-x.json"
    path.write_text(json.dumps(data))
    assert credential_from_token(load_token_file(path)).account_id == "9a8b7c6d-1111-2222-3333-444455556666"


def test_legacy_gemini_cli_sample():
    c = _load("user@gmail.com-my-gcp-project.json")
    assert (c.provider, c.project_id) == ("gemini-cli", "my-gcp-project")  # the first of the list
    assert c.secret == "ya29.SAMPLE-gemini-cli-access-token"
    assert c.expires_at is not None


def test_antigravity_qwen_kimi_iflow_xai_vertex_samples():
    ag = _load("antigravity-user@gmail.com.json")
    assert (ag.provider, ag.project_id) == ("antigravity", "vivid-octane-a1b2c")
    qwen = _load("qwen-user@example.com.json")
    assert qwen.base_url == "https://portal.qwen.ai/v1"
    assert _load("kimi-1763604000000.json").provider == "kimi"
    iflow = _load("iflow-user@example.com-1763604000.json")
    assert iflow.secret == "sk-SAMPLE-iflow-api-key-0001"  # requests carry the API key
    assert _load("xai-user@example.com.json").provider == "xai"
    vertex = _load("vertex-my-gcp-project.json")
    assert (vertex.kind, vertex.project_id, vertex.location) == ("service-account", "my-gcp-project", "us-central1")
    assert vertex.secret == ""  # minted on demand, never stored


def test_samples_serve_their_models(tmp_path):
    shutil.copytree(SAMPLES, tmp_path / "auth")
    store = AuthStore()
    store.set_directory(tmp_path / "auth")
    router = Router(store.credentials())
    providers = lambda model: {r.credential.provider for r in router.resolve(model)}
    assert providers("claude-sonnet-4-5") == {"claude"}
    assert providers("gpt-5") == {"codex"}
    assert providers("gemini-2.5-pro") == {"gemini-cli", "antigravity", "vertex"}
    assert providers("qwen3-coder-plus") == {"qwen", "iflow"}
    assert providers("kimi-k2") == {"kimi", "iflow"}
    assert providers("grok-code-fast-1") == {"xai"}
    listed = {m.id for m in router.models()}
    assert {"gemini-2.5-flash", "qwen3-coder-flash", "kimi-k2-thinking", "grok-4"} <= listed


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def test_generic_fields(tmp_path):
    path = tmp_path / "claude-a.json"
    _write(path, {
        "type": "claude", "access_token": "at-1", "refresh_token": "rt-1",
        "prefix": "work", "attributes": {"priority": "10", "description": "team account", "websockets": "true"},
        "excluded_models": ["*-opus-*"], "base_url": "https://gateway.example/", "proxy_url": "socks5://x",
        "headers": {"x-team": "a"},
    })
    c = credential_from_token(load_token_file(path))
    assert (c.prefix, c.priority, c.excluded_models) == ("work", 10, ("*-opus-*",))
    assert (c.base_url, c.description, c.websockets) == ("https://gateway.example", "team account", True)
    assert dict(c.headers) == {"x-team": "a"}
    router = Router([c])
    assert [r.model for r in router.resolve("work/claude-sonnet-4-5")] == ["claude-sonnet-4-5"]
    with pytest.raises(LookupError):
        router.resolve("claude-opus-4-1")


def test_top_level_priority_wins_over_attributes(tmp_path):
    path = tmp_path / "claude-a.json"
    _write(path, {"type": "claude", "access_token": "a", "priority": 3, "attributes": {"priority": "10"}})
    assert credential_from_token(load_token_file(path)).priority == 3


def test_disabled_files_are_kept_out_of_the_pool(tmp_path):
    _write(tmp_path / "claude-a.json", {"type": "claude", "access_token": "a", "disabled": True})
    _write(tmp_path / "claude-b.json", {"type": "claude", "access_token": "b"})
    store = AuthStore()
    store.set_directory(tmp_path)
    assert [c.source for c in store.credentials()] == ["claude-b.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"type": "claude", "access_tok', "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"access_token": "SECRET-TOKEN-VALUE"}', 'no "type"'),
        ('{"type": "aistudio", "access_token": "SECRET-TOKEN-VALUE"}', "not supported"),
        ('{"type": "claude", "email": "a@b"}', "neither access_token nor refresh_token"),
        ('{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "prefix": "a/b"}', "one path segment"),
        ('{"type": "vertex", "service_account": {"client_email": "x"}}', "private_key"),
    ],
)
def test_unusable_files_are_skipped_with_one_line_naming_the_file(tmp_path, caplog, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    store = AuthStore()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(tmp_path)
        store.scan()
        os.utime(path, (time.time() + 5, time.time() + 5))  # touched, still as broken
        store.scan()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "bad.json" in lines[0] and message in lines[0]
    assert "SECRET-TOKEN-VALUE" not in lines[0]
    assert store.credentials() == []


def test_directory_changes_are_picked_up_by_a_rescan(tmp_path, caplog):
    store = AuthStore()
    store.set_directory(tmp_path)
    a = tmp_path / "claude-a.json"

    _write(a, {"type": "claude", "access_token": "at-1", "refresh_token": "rt-1"})
    result = store.scan()
    assert result.added == ["claude:claude-a.json"] and store.credentials()[0].secret == "at-1"

    _write(a, {"type": "claude", "access_token": "at-2", "refresh_token": "rt-1", "priority": 5})
    result = store.scan()
    assert result.changed == ["claude:claude-a.json"]
    assert (store.credentials()[0].secret, store.credentials()[0].priority) == ("at-2", 5)

    # Truncated mid-write: skipped with one line, the version loaded before stays in force.
    with caplog.at_level(logging.WARNING, logger="cliproxy"):
        a.write_text('{"type": "claude", "access_token": "at-3"')
        assert not store.scan()
    assert store.credentials()[0].secret == "at-2"
    assert len(caplog.records) == 1 and "claude-a.json" in caplog.records[0].getMessage()
    assert "at-3" not in caplog.records[0].getMessage()

    _write(a, {"type": "claude", "access_token": "at-3", "refresh_token": "rt-1"})
    assert store.scan().changed == ["claude:claude-a.json"]
    assert store.credentials()[0].secret == "at-3"

    b = tmp_path / "claude-b.json"
    a.rename(b)
    result = store.scan()
    assert (result.added, result.removed) == (["claude:claude-b.json"], ["claude:claude-a.json"])

    b.unlink()
    assert store.scan().removed == ["claude:claude-b.json"]
    assert store.credentials() == []


def test_a_new_file_that_starts_broken_is_picked_up_once_valid(tmp_path):
    store = AuthStore()
    store.set_directory(tmp_path)
    path = tmp_path / "codex-a.json"
    path.write_text('{"type": "codex", "acc')
    store.scan()
    assert store.credentials() == []
    _write(path, {"type": "codex", "access_token": "at", "refresh_token": "rt"})
    assert store.scan().added == ["codex:codex-a.json"]


def test_the_proxys_own_writes_are_not_edits(tmp_path):
    store = AuthStore()
    path = tmp_path / "claude-a.json"
    _write(path, {"type": "claude", "access_token": "at-1", "refresh_token": "rt-1"})
    store.set_directory(tmp_path)
    cid = "claude:claude-a.json"
    token = store.entry(cid).token.updated(access_token="at-2", refresh_token="rt-2")
    store.begin_write(cid, token.data)
    save_token_file(token)
    assert not store.scan()  # read back while the write is in progress: not an edit
    store.replace(cid, token)
    assert not store.scan()
    assert store.credentials()[0].secret == "at-2"
    assert store.credentials()[0].id == cid  # same id: cooldowns survive the refresh


def test_temp_files_are_ignored_and_stale_ones_removed(tmp_path):
    _write(tmp_path / ".claude-a.json.abc123.tmp", {"type": "claude", "access_token": "x"})
    old = time.time() - 3600
    os.utime(tmp_path / ".claude-a.json.abc123.tmp", (old, old))
    _write(tmp_path / ".claude-a.json.fresh.tmp", {"type": "claude", "access_token": "x"})
    (tmp_path / "notes.txt").write_text("hello")
    store = AuthStore()
    store.set_directory(tmp_path)
    assert store.credentials() == []
    assert not (tmp_path / ".claude-a.json.abc123.tmp").exists()
    assert (tmp_path / ".claude-a.json.fresh.tmp").exists()  # maybe another writer's, in flight


def test_a_recorded_refresh_failure_is_read_back(tmp_path):
    path = tmp_path / "claude-a.json"
    _write(path, {"type": "claude", "access_token": "a", "refresh_token": "r",
                  REFRESH_ERROR_KEY: {"error": "invalid_grant", "at": "2025-01-01T00:00:00Z"}})
    assert credential_from_token(load_token_file(path)).refresh_error == "invalid_grant"


def test_missing_directory_is_empty(tmp_path):
    store = AuthStore()
    assert not store.set_directory(tmp_path / "nope")
    assert store.credentials() == []


def test_token_file_errors_never_quote_tokens(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"type": "claude", "access_token": "SECRET-ABCDEF", "prefix": "a/b"}')
    with pytest.raises(TokenFileError) as e:
        credential_from_token(TokenFile(path, json.loads(path.read_text())))
    assert "SECRET" not in str(e.value)


def test_cliproxy_check_lists_the_auth_files(tmp_path):
    import subprocess
    import sys

    shutil.copytree(SAMPLES, tmp_path / "auth")
    (tmp_path / "config.yaml").write_text(f"auth-dir: {tmp_path / 'auth'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "routing.cli", "--config", str(tmp_path / "config.yaml"), "check"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert "auth file claude-user@example.com.json" in result.stdout
    assert "gemini-2.5-pro" in result.stdout
    assert "SAMPLE" not in result.stdout + result.stderr


# -- files that are not token files, or damaged ones: one line each, and the scan goes on ----------

SECRET = "SECRET-TOKEN-VALUE"
GOOD = {"type": "claude", "access_token": "at-good", "refresh_token": "rt-good"}


def _scan_logged(store: AuthStore, caplog, scans: int = 1) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        for _ in range(scans):
            store.scan()
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE\xff\xfe"}', "not UTF-8 text (invalid byte at offset 54)"),
        (bytes(range(256)) * 64 + SECRET.encode(), "not UTF-8 text"),
        (b"\x00" * 100 + SECRET.encode(), "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 200_000, "JSON nested too deeply"),
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
         "JSON nested too deeply"),
        (b'"SECRET-TOKEN-VALUE"', "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b'{"type": 5, "access_token": "SECRET-TOKEN-VALUE"}', '"type" must be a string'),
        (b'{"type": ["claude"], "access_token": "SECRET-TOKEN-VALUE"}', '"type" must be a string'),
        (b'{"type": "claude", "access_token": 12345}', "access_token must be a string"),
        (b'{"type": "claude", "access_token": {"SECRET-TOKEN-VALUE": [1, {"a": null}]}}', "access_token must be a string"),
        (b'{"type": "gemini", "token": {"access_token": "a", "refresh_token": ["SECRET-TOKEN-VALUE"]}}',
         "refresh_token must be a string"),
        (b'{"type": "gemini", "access_token": "SECRET-TOKEN-VALUE", "project_id": ["p"]}', "project_id must be a string"),
        (b'{"type": "iflow", "api_key": 7, "refresh_token": "SECRET-TOKEN-VALUE"}', "api_key must be a string"),
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "proxy_url": {"u": 1}}', "proxy_url must be a string"),
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "headers": ["x"]}', "headers must map"),
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "excluded_models": {"a": 1}}', "excluded_models must be"),
        (b'{"type": "vertex", "service_account": {"private_key": 1, "client_email": "x"}, "project_id": "p"}',
         "must be strings"),
        (b'{"type": "claude", "access_token": "SECRET-TOKEN-VALUE", "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
    ids=["invalid-utf8", "binary", "nul-bytes", "empty", "deep-array", "deep-field", "string", "null",
         "type-number", "type-list", "token-number", "token-object", "nested-refresh-token", "project-list",
         "api-key-number", "proxy-url-object", "headers-list", "excluded-object", "vertex-key-number", "huge-int"],
)
def test_a_damaged_file_is_named_once_and_the_scan_goes_on(tmp_path, caplog, content, message):
    (tmp_path / "a-bad.json").write_bytes(content)
    _write(tmp_path / "z-good.json", GOOD)  # sorted after the bad one
    store = AuthStore()
    caplog.set_level(logging.INFO, logger="cliproxy")
    store.set_directory(tmp_path)
    os.utime(tmp_path / "a-bad.json", (time.time() + 5, time.time() + 5))  # touched, still as broken
    store.scan()
    lines = [r.getMessage() for r in caplog.records if "a-bad.json" in r.getMessage()]
    assert len(lines) == 1, lines
    assert message in lines[0] and str(tmp_path / "a-bad.json") in lines[0]
    assert SECRET not in caplog.text and "Traceback" not in caplog.text
    assert [c.source for c in store.credentials()] == ["z-good.json"]


def test_a_file_over_one_mib_is_refused_and_a_huge_one_is_not_read(tmp_path, caplog):
    big = tmp_path / "a-big.json"
    big.write_text(json.dumps({**GOOD, "access_token": SECRET, "padding": " " * (1024 * 1024)}))
    huge = tmp_path / "b-huge.json"
    with huge.open("wb") as f:
        f.write(json.dumps(GOOD).encode())
        f.truncate(64 * 1024**3)  # sparse: reading it whole would take minutes and all the memory
    _write(tmp_path / "z-good.json", GOOD)
    store = AuthStore()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(tmp_path)
    assert time.monotonic() - started < 1.0
    (line,) = [r.getMessage() for r in caplog.records if "a-big.json" in r.getMessage()]
    assert f"is {big.stat().st_size} bytes, over the 1 MiB limit for a token file" in line
    (line,) = [r.getMessage() for r in caplog.records if "b-huge.json" in r.getMessage()]
    assert f"is {64 * 1024**3} bytes, over the 1 MiB limit" in line
    assert [c.source for c in store.credentials()] == ["z-good.json"]


@pytest.mark.parametrize(
    "data, check",
    [
        ({"expired": 12}, lambda c: c.expires_at == 12.0),  # epoch seconds: long expired, refreshed at first use
        ({"expired": "not a time"}, lambda c: c.expires_at is None),
        ({"expired": 1e300}, lambda c: c.expires_at is None),
        ({"expired": float("inf")}, lambda c: c.expires_at is None),  # json.loads reads `Infinity`
        ({"expired": float("nan"), "expires_in": float("nan"), "timestamp": 1}, lambda c: c.expires_at is None),
        ({"priority": 1e400}, lambda c: c.priority == 0),
        ({"priority": [1]}, lambda c: c.priority == 0),
        ({"attributes": [[["garbage"]]], "email": {"a": 1}}, lambda c: c.description == ""),
        ({"disabled": "yes"}, lambda c: True),  # only `true` disables
    ],
)
def test_odd_but_harmless_fields_load(tmp_path, caplog, data, check):
    path = tmp_path / "claude-odd.json"
    path.write_text(json.dumps({**GOOD, **data}))
    store = AuthStore()
    with caplog.at_level(logging.WARNING, logger="cliproxy"):
        store.set_directory(tmp_path)
    assert caplog.records == []
    (credential,) = store.credentials()
    assert check(credential)


def test_a_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "claude-a.json").write_bytes("\ufeff".encode() + json.dumps(GOOD).encode())
    store = AuthStore()
    store.set_directory(tmp_path)
    assert [c.secret for c in store.credentials()] == ["at-good"]


def _refused(tmp_path, caplog, name: str) -> str:
    _write(tmp_path / "z-good.json", GOOD)
    store = AuthStore()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(tmp_path)
        store.scan()
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert [c.source for c in store.credentials()] == ["z-good.json"]
    return lines[0]


def test_a_directory_named_json_is_refused_with_a_line(tmp_path, caplog):
    (tmp_path / "x.json").mkdir()
    _write(tmp_path / "x.json" / "claude-inside.json", GOOD)
    assert "x.json: is a directory, not a token file" in _refused(tmp_path, caplog, "x.json")


def test_a_symlink_to_etc_passwd_is_refused_unread(tmp_path, caplog):
    (tmp_path / "passwd.json").symlink_to("/etc/passwd")
    line = _refused(tmp_path, caplog, "passwd.json")
    assert "is a symbolic link to a file outside the auth directory" in line
    assert "root:" not in caplog.text


def test_a_symlink_to_a_token_file_outside_is_refused(tmp_path, caplog):
    outside = tmp_path / "elsewhere" / "claude-x.json"
    outside.parent.mkdir()
    _write(outside, {**GOOD, "access_token": SECRET})
    auth = tmp_path / "auth"
    auth.mkdir()
    (auth / "claude-x.json").symlink_to(outside)
    (auth / "claude-dotdot.json").symlink_to("../elsewhere/claude-x.json")
    _write(auth / "z-good.json", GOOD)
    store = AuthStore()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(auth)
    refused = [r.getMessage() for r in caplog.records if "outside the auth directory" in r.getMessage()]
    assert len(refused) == 2 and SECRET not in caplog.text
    assert [c.source for c in store.credentials()] == ["z-good.json"]


def test_a_symlink_inside_the_directory_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    _write(tmp_path / "real" / "claude-real.json", GOOD)
    (tmp_path / "claude-link.json").symlink_to("real/claude-real.json")
    store = AuthStore()
    store.set_directory(tmp_path)
    assert [c.secret for c in store.credentials()] == ["at-good"]


def test_a_dangling_symlink_is_named_and_loaded_once_its_target_appears(tmp_path, caplog):
    (tmp_path / "claude-later.json").symlink_to("target.txt")
    _write(tmp_path / "z-good.json", GOOD)
    store = AuthStore()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(tmp_path)
    (line,) = [r.getMessage() for r in caplog.records if "claude-later.json" in r.getMessage()]
    assert "is a symbolic link to nothing" in line
    _write(tmp_path / "target.txt", {**GOOD, "access_token": "at-later"})
    assert store.scan().added == ["claude:claude-later.json"]
    assert sorted(c.secret for c in store.credentials()) == ["at-good", "at-later"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(tmp_path, caplog):
    os.mkfifo(tmp_path / "pipe.json")
    assert "is not a regular file" in _refused(tmp_path, caplog, "pipe.json")


def test_a_file_name_with_control_characters_cannot_forge_log_lines(tmp_path, caplog):
    name = "x\ncliproxy: auth file forged.json loaded.json"
    _write(tmp_path / name, GOOD)
    line = _refused(tmp_path, caplog, "forged.json")
    assert "\n" not in line and "x\\ncliproxy" in line
    assert "its name has control characters" in line


def test_an_unexpected_error_names_the_file_and_only_the_error_type(tmp_path, caplog, monkeypatch):
    import auth.store

    def explode(token):
        raise KeyError(SECRET)

    monkeypatch.setattr(auth.store, "credential_from_token", explode)
    _write(tmp_path / "claude-a.json", GOOD)
    store = AuthStore()
    with caplog.at_level(logging.INFO, logger="cliproxy"):
        store.set_directory(tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"cliproxy: auth file skipped: {tmp_path / 'claude-a.json'}: cannot be used (KeyError)"
    ]


def test_a_bad_file_is_reported_once_per_change_and_picked_up_once_fixed(tmp_path, caplog):
    store = AuthStore()
    store.set_directory(tmp_path)
    path = tmp_path / "claude-a.json"
    path.write_bytes(b"\xff" + SECRET.encode())
    assert len(_scan_logged(store, caplog, scans=3)) == 1
    path.write_bytes(b"\xff" + SECRET.encode())  # rewritten, as bad as before: nothing new to say
    assert _scan_logged(store, caplog, scans=2) == []
    path.write_text('["' + SECRET + '"]')  # bad in another way: one new line
    (line,) = _scan_logged(store, caplog, scans=2)
    assert "expected a JSON object" in line and SECRET not in line
    path.unlink()
    path.mkdir()
    (line,) = _scan_logged(store, caplog, scans=2)
    assert "is a directory" in line
    path.rmdir()
    _write(path, GOOD)
    (line,) = _scan_logged(store, caplog)
    assert "claude-a.json loaded" in line
    assert [c.secret for c in store.credentials()] == ["at-good"]


def test_a_token_file_replaced_by_a_directory_or_an_outside_link_leaves_the_pool(tmp_path):
    store = AuthStore()
    _write(tmp_path / "claude-a.json", GOOD)
    _write(tmp_path / "claude-b.json", GOOD)
    store.set_directory(tmp_path)
    (tmp_path / "claude-a.json").unlink()
    (tmp_path / "claude-a.json").mkdir()
    (tmp_path / "claude-b.json").unlink()
    (tmp_path / "claude-b.json").symlink_to("/etc/passwd")
    assert sorted(store.scan().removed) == ["claude:claude-a.json", "claude:claude-b.json"]
    assert store.credentials() == []
