"""config.yaml at start-up and while running, through a real mitmdump."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import anthropic
import pytest

from tests.clients import ask_claude as ask
from tests.conftest import free_port, vendor_overrides
from tests.fakes.upstream import FakeUpstream

KEY_A = "sk-ant-config-test-key-AAAA"
KEY_B = "sk-ant-config-test-key-BBBB"


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def test_bad_config_stops_startup_naming_the_key(make_proxy):
    proxy = make_proxy(
        {"claude-api-key": [{"api-key": KEY_A, "priority": "high"}]}, start=False
    )
    proxy.start(wait=False)
    assert proxy.process is not None
    code = proxy.process.wait(timeout=30)
    output = proxy.output()
    assert code == 1
    assert f"{proxy.config_path}: claude-api-key[0].priority: Input should be a valid integer" in output
    assert "Traceback" not in output
    assert KEY_A not in output


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"claude-api-key": [{"api-key": KEY_A, "baseurl": "https://gateway.example.com"}]},
            "claude-api-key[0].baseurl: unknown key; did you mean base-url?",
        ),
        (
            {"claude-api-key": [{"api-key": KEY_A, "base-url": "gateway.example.com/anthropic"}]},
            "claude-api-key[0].base-url: not a URL: it needs a scheme (http://, https://) and a host",
        ),
        (
            {"claude-api-key": [{"api-key": KEY_A, "proxy-url": "socks4://127.0.0.1:1080"}]},
            "claude-api-key[0].proxy-url: scheme 'socks4' is not one of http://, https://, socks5://, socks5h://",
        ),
        (
            {"api-keys": ["your-api-key-1"]},
            "api-keys[0]: this is the placeholder key of an example config",
        ),
        ({"api-keys": ["change-me-to-a-long-random-string"]}, "api-keys[0]: this is the placeholder key"),
        ({"claude-api-keys": [{"api-key": KEY_A}]}, "claude-api-keys: unknown key; did you mean claude-api-key?"),
        ({"upstream-overrides": {"api.anthropic.com": "127.0.0.1:9001"}}, "upstream-overrides: api.anthropic.com: not a URL"),
    ],
)
def test_each_config_mistake_stops_startup_with_one_line(make_proxy, config, message):
    proxy = make_proxy(config, start=False)
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) == 1
    output = proxy.output()
    assert f"{proxy.config_path}: {message}" in output
    assert len([line for line in output.splitlines() if str(proxy.config_path) in line]) == 1
    assert "Traceback" not in output
    assert KEY_A not in output


def test_messages_name_the_config_file_as_it_was_given(make_proxy):
    proxy = make_proxy({"routing": {"stratgy": "fill-first"}}, start=False)
    proxy.config_arg = "config.yaml"
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) == 1
    assert "] config.yaml: routing.stratgy: unknown key; did you mean strategy?" in proxy.output()


def test_cliproxyapi_keys_are_reported_once_and_remote_management_is_served(make_proxy):
    config = {"tls": {"enable": False}, "remote-management": {"secret-key": "mgmt-secret-xyz"}, "debug": True}
    proxy = make_proxy(config)
    output = proxy.output()
    assert "CLIProxyAPI keys not supported here, ignored: tls" in output
    assert "remote-management" not in output.split("ignored:", 1)[1].splitlines()[0]
    assert "management API on /v0/management" in output
    assert "mgmt-secret-xyz" not in output
    mark = len(output)
    proxy.write_config({**config, "request-retry": 1})
    proxy.wait_for_output("reloaded", start=mark)
    assert "not supported" not in proxy.output()[mark:]


def test_invalid_yaml_names_the_line(make_proxy):
    proxy = make_proxy({}, start=False)
    proxy.config_path.write_text("port: 8317\nclaude-api-key: [\n")
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) != 0
    assert "not valid YAML" in proxy.output() and "line" in proxy.output()


def test_no_config_file_runs_on_defaults_and_says_how_to_add_credentials(make_proxy):
    """Without a file the listener takes its default port, 8317. Whether or not the user's own
    proxy holds it, this test holds it too (so it never depends on the port being free): the
    proxy says how to add credentials, and names the port it cannot have."""
    proxy = make_proxy({}, start=False)
    proxy.config_path.unlink()
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 8317))
            holder.listen()
        except OSError:
            pass  # someone else holds it already
        proxy.start(wait=False)
        assert proxy.process.wait(timeout=30) == 1
    output = proxy.output()
    assert "no config file" in output and "config.example.yaml" in output
    assert "failed to listen on 127.0.0.1:8317" in output
    assert "Traceback" not in output


def test_a_config_without_credentials_says_how_to_add_them(make_proxy):
    proxy = make_proxy({})
    # Logged once the listeners are up, so it may follow the moment the ports answer.
    proxy.wait_for_output("no credentials are configured")
    assert proxy.get("/healthz").json()["status"] == "no credentials"


def test_edits_apply_live_and_bad_edits_are_rejected(fake, make_proxy):
    config = {
        "claude-api-key": [{"api-key": KEY_A}],
        "upstream-overrides": vendor_overrides(fake),
    }
    proxy = make_proxy(config)
    ask(proxy)
    assert fake.keys_used() == [KEY_A]

    # A good edit: a new key and client authentication, applied without a restart.
    config = {**config, "claude-api-key": [{"api-key": KEY_B}], "api-keys": ["client-secret-1"]}
    mark = len(proxy.output())
    proxy.write_config(config)
    proxy.wait_for_output("reloaded", start=mark)
    with pytest.raises(anthropic.AuthenticationError):
        ask(proxy)
    ask(proxy, api_key="client-secret-1")
    assert fake.keys_used() == [KEY_A, KEY_B]

    # A bad edit: rejected with the key named; the running config stays in force.
    mark = len(proxy.output())
    proxy.write_config({**config, "reqest-retry": 1})
    proxy.wait_for_output("config edit rejected", start=mark)
    assert "reqest-retry: unknown key; did you mean request-retry?" in proxy.output()[mark:]
    ask(proxy, api_key="client-secret-1")
    assert fake.keys_used()[-1] == KEY_B
    assert proxy.process.poll() is None


def test_listener_moves_when_the_port_changes(fake, make_proxy):
    proxy = make_proxy({"claude-api-key": [{"api-key": KEY_A}], "upstream-overrides": vendor_overrides(fake)})
    old_port, proxy.port = proxy.port, free_port()
    mark = len(proxy.output())
    proxy.write_config({"claude-api-key": [{"api-key": KEY_A}], "upstream-overrides": vendor_overrides(fake)})
    proxy.wait_for_output("reloaded", start=mark)
    deadline = time.monotonic() + 10
    while True:
        try:
            ask(proxy)
            break
        except anthropic.APIConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with pytest.raises(anthropic.APIConnectionError):
        anthropic.Anthropic(api_key="x", base_url=f"http://127.0.0.1:{old_port}", max_retries=0).messages.create(
            model="claude-test-1", max_tokens=8, messages=[]
        )


def test_an_idle_proxy_does_not_reread_its_config(make_proxy):
    """Reading the file is not a change: the watcher must not wake itself up."""
    proxy = make_proxy({"debug": True})
    proxy.get("/healthz")
    time.sleep(0.5)  # the one check right after start-up
    mark = len(proxy.output())
    time.sleep(1.5)
    assert "cliproxy: reading" not in proxy.output()[mark:]
    proxy.write_config({"debug": True, "request-retry": 1})
    proxy.wait_for_output("cliproxy: reading", start=mark)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_writes_to_other_files_beside_the_config_cost_the_proxy_next_to_nothing(make_proxy):
    """The folder of config.yaml also holds the proxy's log, the usage database, a benchmark's
    output: their writes must not wake the config watcher. Measured as the proxy's own CPU time,
    which the machine's load does not inflate the way wall time would."""
    proxy = make_proxy({"debug": True})
    pid = proxy.process.pid
    proxy.get("/healthz")
    time.sleep(0.5)  # the one check right after start-up
    mark = len(proxy.output())

    start = time.monotonic()
    before = _cpu_seconds(pid)
    for _ in range(2000):
        with open(proxy.workdir / "bench.out", "a") as f:
            f.write("x\n")
    time.sleep(0.5)  # for whatever the watcher would still do with the burst
    spent = _cpu_seconds(pid) - before
    elapsed = time.monotonic() - start

    before = _cpu_seconds(pid)
    time.sleep(elapsed)
    idle = _cpu_seconds(pid) - before
    # Before the path filter this was 300-400 ms (about 165 us a write); now 10-40 ms.
    assert spent - idle < 0.12, f"2,000 unrelated writes cost the proxy {spent * 1000:.0f} ms of CPU"

    assert "cliproxy: reading" not in proxy.output()[mark:]
    proxy.write_config({"debug": True, "request-retry": 1})
    proxy.wait_for_output("cliproxy: reading", start=mark)
