"""The `cliproxy` command."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.conftest import vendor_overrides


def cliproxy(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_env_explains_a_missing_ca(tmp_path):
    result = cliproxy("env", "claude", "--confdir", str(tmp_path))
    assert result.returncode == 1
    assert "does not exist yet" in result.stderr and "scripts/run" in result.stderr
    assert result.stdout == ""


def test_env_prints_the_lines_each_cli_needs(confdir, make_proxy, fake):
    make_proxy({})  # creates the CA in the shared confdir
    claude = cliproxy("env", "claude", "--confdir", str(confdir), "--proxy-port", "18080").stdout
    assert "export HTTPS_PROXY=http://127.0.0.1:18080" in claude
    assert f"export NODE_EXTRA_CA_CERTS={confdir / 'mitmproxy-ca-cert.pem'}" in claude
    codex = cliproxy("env", "codex", "--confdir", str(confdir)).stdout
    bundle = confdir / "cliproxy-ca-bundle.pem"
    assert f"export CODEX_CA_CERTIFICATE={bundle}" in codex and f"export SSL_CERT_FILE={bundle}" in codex
    # The bundle keeps the system's CAs (tunnelled hosts verify) and adds mitmproxy's.
    assert (confdir / "mitmproxy-ca-cert.pem").read_bytes().strip() in bundle.read_bytes()
    assert bundle.read_bytes().count(b"BEGIN CERTIFICATE") > 2


def test_doctor_checks_the_whole_path(confdir, make_proxy, fake, tmp_path):
    config = {"claude-api-key": [{"api-key": "sk-ant-doctor-test-0001"}], "upstream-overrides": vendor_overrides(fake)}
    proxy = make_proxy(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = cliproxy("env", "claude", "--confdir", str(confdir), "--proxy-port", str(proxy.proxy_port)).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines.splitlines() if line.startswith("export"))
    result = cliproxy(
        "--config", str(tmp_path / "config.yaml"),
        "doctor", "claude", "--confdir", str(confdir), "--proxy-port", str(proxy.proxy_port),
        env=env,
    )
    assert result.returncode == 0, result.stdout
    assert "[!!]" not in result.stdout
    assert "claude-api-key[0]" in result.stdout and "sk-ant-doctor-test-0001" not in result.stdout

    unset = cliproxy(
        "--config", str(tmp_path / "config.yaml"),
        "doctor", "claude", "--confdir", str(confdir), "--proxy-port", str(proxy.proxy_port),
        env={"HTTPS_PROXY": "", "NODE_EXTRA_CA_CERTS": ""},
    )
    assert unset.returncode == 1
    assert 'eval "$(cliproxy env claude)"' in unset.stdout


def test_check_lists_credentials_without_secrets(tmp_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"gemini-api-key": [{"api-key": "AIza-check-test-secret-1234", "prefix": "w"}], "tls": {}})
    )
    result = cliproxy("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 0
    assert "gemini-api-key[0] (…1234)" in result.stdout
    assert "w/gemini-2.5-pro" in result.stdout
    assert "ignored (not supported here): tls" in result.stdout
    assert "AIza-check-test-secret-1234" not in result.stdout


def test_check_names_the_bad_key(tmp_path):
    (tmp_path / "config.yaml").write_text("routing:\n  strategy: sideways\n")
    result = cliproxy("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 1
    assert "routing.strategy" in result.stdout
