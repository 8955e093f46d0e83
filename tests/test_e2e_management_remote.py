"""Remote callers of the management API, end to end: the proxy in one network namespace, the
caller in another, joined by a veth pair, both made by this test. No traffic leaves them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.test_e2e_management import API, CLIENT_KEY, SECRET

SERVER_ADDRESS, CLIENT_ADDRESS = "10.231.7.1", "10.231.7.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = secrets.token_hex(3)
    server, client = f"cpx-s-{tag}", f"cpx-c-{tag}"
    try:
        _ip("netns", "add", server)
        _ip("netns", "add", client)
        _ip("link", "add", f"vs{tag}", "type", "veth", "peer", "name", f"vc{tag}")
        _ip("link", "set", f"vs{tag}", "netns", server)
        _ip("link", "set", f"vc{tag}", "netns", client)
        for ns, link, address in ((server, f"vs{tag}", SERVER_ADDRESS), (client, f"vc{tag}", CLIENT_ADDRESS)):
            _ip("-n", ns, "addr", "add", f"{address}/30", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as e:
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"network namespaces are not available here: {e.stderr.decode().strip()}")
    yield server, client
    for ns in (server, client):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def get_in(ns: str, url: str, headers: dict[str, str]) -> tuple[int, str]:
    """GET `url` from inside namespace `ns`: (status, body)."""
    code = (
        "import httpx, json, sys; "
        "r = httpx.get(sys.argv[1], headers=json.loads(sys.argv[2]), timeout=10); "
        "print(r.status_code); print(r.text)"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, url, json.dumps(headers)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    status, _, body = out.stdout.partition("\n")
    return int(status), body


def test_remote_callers_get_403_unless_allow_remote(make_proxy, namespaces):
    server, client = namespaces
    config = {
        "host": "0.0.0.0",
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": "sk-ant-remote-test-key-AAAA"}],
        "remote-management": {"secret-key": SECRET},
    }
    proxy = make_proxy(config, start=False)
    command = proxy.command
    proxy.command = lambda: ["ip", "netns", "exec", server, *command()]
    proxy.start()
    key = {"x-management-key": SECRET}
    local = f"http://127.0.0.1:{proxy.port}{API}/credentials"
    remote = f"http://{SERVER_ADDRESS}:{proxy.port}{API}/credentials"
    assert get_in(server, local, key)[0] == 200  # loopback, the same listener
    status, body = get_in(client, remote, key)
    assert status == 403 and "allow-remote" in body
    assert get_in(client, f"http://{SERVER_ADDRESS}:{proxy.port}/status", {})[0] == 403
    mark = len(proxy.output())
    proxy.write_config({**config, "remote-management": {"secret-key": SECRET, "allow-remote": True}})
    proxy.wait_for_output("any client with the key", start=mark)
    deadline = time.monotonic() + 5
    while (status := get_in(client, remote, key)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200
    assert get_in(client, remote, {"x-management-key": "wrong"})[0] == 401
