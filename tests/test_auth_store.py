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
