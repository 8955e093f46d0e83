"""config.yaml at start-up and while running, through a real mitmdump."""

from __future__ import annotations

import time

import anthropic
import pytest

from tests.conftest import free_port, vendor_overrides
from tests.fakes.upstream import FakeUpstream

KEY_A = "sk-ant-config-test-key-AAAA"
KEY_B = "sk-ant-config-test-key-BBBB"


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def ask(proxy, api_key: str = "unused") -> anthropic.types.Message:
    client = anthropic.Anthropic(api_key=api_key, base_url=proxy.base_url, max_retries=0)
    return client.messages.create(
        model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )


def test_bad_config_stops_startup_naming_the_key(make_proxy):
    proxy = make_proxy(
        {"claude-api-key": [{"api-key": KEY_A, "priority": "high"}]}, start=False
    )
    proxy.start(wait=False)
    assert proxy.process is not None
    code = proxy.process.wait(timeout=30)
    output = proxy.output()
    assert code != 0
    assert str(proxy.config_path) in output
    assert "claude-api-key[0].priority" in output
    assert KEY_A not in output


def test_invalid_yaml_names_the_line(make_proxy):
    proxy = make_proxy({}, start=False)
    proxy.config_path.write_text("port: 8317\nclaude-api-key: [\n")
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) != 0
    assert "not valid YAML" in proxy.output() and "line" in proxy.output()


def test_no_config_file_starts_and_says_how_to_add_credentials(make_proxy):
    proxy = make_proxy({}, start=False)
    proxy.config_path.unlink()
    # Without a file the listener takes its default port; use the default only if it is free.
    proxy.port = 8317
    try:
        proxy.start()
    except (RuntimeError, TimeoutError):
        pytest.skip("port 8317 is taken on this machine")
    output = proxy.output()
    assert "no config file" in output and "config.example.yaml" in output
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
    ask(proxy, "client-secret-1")
    assert fake.keys_used() == [KEY_A, KEY_B]

    # A bad edit: rejected with the key named; the running config stays in force.
    mark = len(proxy.output())
    proxy.write_config({**config, "request-retry": -1})
    proxy.wait_for_output("config edit rejected", start=mark)
    assert "request-retry" in proxy.output()[mark:]
    ask(proxy, "client-secret-1")
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
