"""Damaged and foreign entries in the auth directory, through a real mitmdump: each is named once
in the log (never with its tokens), the scan goes on, and every good file serves requests."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import pytest

from tests.conftest import Proxy
from tests.fakes.tokens import FakeTokenServer
from tests.fakes.upstream import FakeUpstream
from tests.waiting import wait_until

HOUR = 3600
API_HOSTS = ("api.anthropic.com",)


@pytest.fixture(scope="module")
def tokens():
    with FakeTokenServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream, tokens: FakeTokenServer):
    fake.clear()
    fake.authorize = tokens.check_upstream
    yield
    fake.authorize = None


def atomically(path: Path, content: bytes) -> None:
    """Write as a careful writer does (temp file, then rename), so the watcher never sees a
    half-written file: each bad file is seen in exactly one bad state."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_bytes(content)
    os.replace(tmp, path)


def bad_entries(auth: Path, outside: Path, tag: str, secret: str) -> dict[str, tuple[Callable[[], None], str]]:
    """Entry name -> (how to make it, what its log line must say). Every one carries `secret`
    somewhere a careless error message or traceback would show."""
    token = json.dumps({"type": "claude", "access_token": secret}).encode()
    target = outside / f"claude-{tag}-outside.json"
    target.write_bytes(token)
    entries: dict[str, tuple[Callable[[], None], str]] = {
        f"{tag}-utf8.json": (b'{"type": "claude", "access_token": "' + secret.encode() + b'\xff"}', "not UTF-8 text"),
        f"{tag}-binary.json": (bytes(range(256)) * 16 + secret.encode(), "not UTF-8 text"),
        f"{tag}-huge.json": (token[:-1] + b', "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}', "over the 1 MiB limit"),
        f"{tag}-array.json": (b'["' + secret.encode() + b'"]', "expected a JSON object"),
        f"{tag}-type.json": (b'{"type": 5, "access_token": "' + secret.encode() + b'"}', '"type" must be a string'),
        f"{tag}-token-type.json": (b'{"type": "claude", "access_token": {"v": "' + secret.encode() + b'"}}',
                                   "access_token must be a string"),
        f"{tag}-deep.json": (token[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    }
    made = {name: ((lambda p=auth / name, c=content: atomically(p, c)), why)
            for name, (content, why) in entries.items()}
    made[f"{tag}-dir.json"] = (lambda: (auth / f"{tag}-dir.json").mkdir(), "is a directory")
    made[f"{tag}-passwd.json"] = (lambda: (auth / f"{tag}-passwd.json").symlink_to("/etc/passwd"),
                                  "symbolic link to a file outside the auth directory")
    made[f"{tag}-outside.json"] = (lambda: (auth / f"{tag}-outside.json").symlink_to(target),
                                   "symbolic link to a file outside the auth directory")
    if hasattr(os, "mkfifo"):
        made[f"{tag}-fifo.json"] = (lambda: os.mkfifo(auth / f"{tag}-fifo.json"), "is not a regular file")
    return made


def good_file(auth: Path, tokens: FakeTokenServer, name: str) -> str:
    """A valid Claude login reachable only as `{name}/claude-test-1`; returns its access token."""
    pair = tokens.issue(name)
    (auth / f"{name}.json").write_text(json.dumps({
        "type": "claude", "access_token": pair.access, "refresh_token": pair.refresh, "prefix": name,
        "expired": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8 * HOUR)),
    }))
    return pair.access


def auth_files(proxy: Proxy) -> int:
    return proxy.get("/healthz").json()["auth_files"]


def test_a_burst_of_bad_and_good_token_files(fake, tokens, make_proxy, tmp_path):
    proxy = make_proxy({"upstream-overrides": {**{h: fake.base_url for h in API_HOSTS}, **tokens.overrides()}},
                       start=False)
    auth = proxy.workdir / "auth"
    auth.mkdir()
    secret = "sk-ant-oat01-MUST-NEVER-BE-LOGGED"

    # Present at start: bad entries sorted before, between and after the good files.
    bad = bad_entries(auth, tmp_path, "a", secret)
    for make, _ in bad.values():
        make()
    good = {name: good_file(auth, tokens, name) for name in ("b-good", "m-good")}
    bad_late = bad_entries(auth, tmp_path, "z", secret)
    for make, _ in bad_late.values():
        make()
    proxy.start()
    assert auth_files(proxy) == 2

    # While running: a burst of bad and good files, interleaved.
    burst = bad_entries(auth, tmp_path, "n", secret)
    for i, (make, _) in enumerate(burst.values()):
        make()
        if i % 3 == 0:
            name = f"n-good{i}"
            good[name] = good_file(auth, tokens, name)
    wait_until(lambda: auth_files(proxy) == len(good), 10, "every good file loaded")
    bad |= bad_late | burst
    wait_until(lambda: all(name in proxy.output() for name in bad), 10, "every bad entry reported")

    # Later rescans (another file added, a bad one touched) do not repeat a line.
    os.utime(auth / "a-utf8.json")
    good["zz-last"] = good_file(auth, tokens, "zz-last")
    wait_until(lambda: auth_files(proxy) == len(good), 10, "the last good file loaded")
    time.sleep(0.5)

    output = proxy.output()
    for name, (_, why) in bad.items():
        lines = [line for line in output.splitlines() if f"/{name}:" in line or f" {name} " in line]
        assert len(lines) == 1, (name, lines)
        assert why in lines[0], (name, lines[0])
    for name, access in good.items():
        client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0, timeout=30)
        message = client.messages.create(model=f"{name}/claude-test-1", max_tokens=8,
                                         messages=[{"role": "user", "content": "hi"}])
        assert message.content[0].text == fake.text
        assert fake.requests[-1].api_key == access, name
    output = proxy.output()
    assert secret not in output
    assert not any(access in output for access in good.values())
    assert "Traceback" not in output
    assert "root:" not in output  # /etc/passwd was not read into any line


def test_a_directory_made_alone_is_noticed_by_the_watcher(fake, tokens, make_proxy):
    proxy = make_proxy({"upstream-overrides": tokens.overrides()})
    auth = proxy.workdir / "auth"
    time.sleep(0.5)  # past the rescan the watcher makes when it starts
    mark = len(proxy.output())
    (auth / "claude-x.json").mkdir()
    proxy.wait_for_output("claude-x.json: is a directory, not a token file", timeout=5, start=mark)
    (auth / "claude-x.json").rmdir()
    access = good_file(auth, tokens, "claude-x")
    wait_until(lambda: auth_files(proxy) == 1, 5, "the file that replaced the directory loaded")
    assert access not in proxy.output()
