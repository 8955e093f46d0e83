"""The `cliproxy` command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, free_port, vendor_overrides


def cliproxy(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        # This checkout's code, whatever the working directory.
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd,
    )


def exported(lines: str) -> dict[str, str]:
    """The variables a shell evaluating `lines` would export."""
    script = f"{lines}\nenv -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env={}).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item and not item.startswith(("PWD=", "SHLVL=", "_=")))


def test_env_without_a_running_proxy_prints_lines_and_says_so(confdir, make_proxy):
    make_proxy({})  # creates the CA in the shared confdir
    result = cliproxy("env", "claude", "--confdir", str(confdir), "--proxy-port", str(free_port()))
    assert result.returncode == 0
    assert exported(result.stdout)["HTTPS_PROXY"].startswith("http://127.0.0.1:")
    assert "nothing answers" in result.stderr and "scripts/run" in result.stderr


def test_env_explains_a_missing_ca(tmp_path):
    result = cliproxy("env", "claude", "--confdir", str(tmp_path))
    assert result.returncode == 1
    assert "does not exist yet" in result.stderr and "scripts/run" in result.stderr
    assert result.stdout == ""


def test_env_prints_the_lines_each_cli_needs(confdir, make_proxy, fake):
    proxy = make_proxy({})  # creates the CA in the shared confdir
    port = str(proxy.proxy_port)
    claude = cliproxy("env", "claude", "--confdir", str(confdir), "--proxy-port", port).stdout
    assert f"export HTTPS_PROXY=http://127.0.0.1:{port}" in claude
    assert f"export NODE_EXTRA_CA_CERTS={confdir / 'mitmproxy-ca-cert.pem'}" in claude
    codex = cliproxy("env", "codex", "--confdir", str(confdir), "--proxy-port", port).stdout
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
    env = exported(lines)
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
    # What the doctor says to run works when typed: the command it names exists, and the rest
    # of the line (run from this checkout) sets the shell up so that the doctor is satisfied.
    advice = re.search(r'-> eval "\$\((.+?)\)"', unset.stdout)
    assert advice, unset.stdout
    command, *arguments = shlex.split(advice.group(1))
    assert shutil.which(command) or os.access(command, os.X_OK), command
    assert arguments[-6:] == ["env", "claude", "--proxy-port", str(proxy.proxy_port), "--confdir", str(confdir)]
    lines = cliproxy(*arguments, cwd=ROOT).stdout
    fixed = cliproxy(
        "--config", str(tmp_path / "config.yaml"),
        "doctor", "claude", "--confdir", str(confdir), "--proxy-port", str(proxy.proxy_port),
        env=exported(lines),
    )
    assert fixed.returncode == 0, fixed.stdout


def test_check_lists_credentials_without_secrets(tmp_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({"gemini-api-key": [{"api-key": "AIza-check-test-secret-1234", "prefix": "w"}], "tls": {}})
    )
    result = cliproxy("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 0
    assert "gemini-api-key[0] (…1234)" in result.stdout
    assert "w/gemini-2.5-pro" in result.stdout
    assert "warning: CLIProxyAPI keys not supported here, ignored: tls" in result.stdout
    assert "AIza-check-test-secret-1234" not in result.stdout


def test_check_names_the_bad_key(tmp_path):
    (tmp_path / "config.yaml").write_text("routing:\n  strategy: sideways\n")
    result = cliproxy("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 1
    assert "routing.strategy" in result.stdout


def test_check_refuses_a_listener_beyond_loopback_without_api_keys(tmp_path):
    (tmp_path / "config.yaml").write_text("host: 0.0.0.0\n")
    result = cliproxy("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{tmp_path / 'config.yaml'}: api-keys: required, because the API listener on 0.0.0.0:8317")


def test_check_names_an_unknown_key_with_a_suggestion(tmp_path):
    (tmp_path / "config.yaml").write_text("claude-api-key:\n  - api-key: k\n    baseurl: https://gw.example.com\n")
    result = cliproxy("--config", "config.yaml", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == "config.yaml: claude-api-key[0].baseurl: unknown key; did you mean base-url?\n"


def _description(help_text: str) -> str:
    """The paragraph argparse prints between the usage and the argument lists."""
    paragraphs = [p for p in help_text.split("\n\n") if p.strip()]
    text = paragraphs[1] if len(paragraphs) > 1 else ""
    return "" if text.startswith(("positional arguments", "options")) else " ".join(text.split())


@pytest.mark.parametrize("command", [(), ("run",), ("check",), ("env",), ("doctor",), ("auth",)])
def test_every_help_text_has_a_whole_description(command):
    result = cliproxy(*command, "--help")
    assert result.returncode == 0
    description = _description(result.stdout)
    assert len(description) > 40, result.stdout
    assert description.endswith("."), description  # not cut off mid-sentence


def test_env_and_doctor_explain_their_arguments():
    for command in ("env", "doctor"):
        text = " ".join(cliproxy(command, "--help").stdout.split())
        assert "the vendor CLI: claude, codex, gemini" in text
        assert "(default 8080)" in text and "(default ~/.mitmproxy)" in text and "(default 127.0.0.1)" in text
