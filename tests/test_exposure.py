"""routing/exposure.py: which binds are loopback, the exposure rule, proxy credentials."""

from __future__ import annotations

import base64
import shlex
import subprocess
from urllib.parse import unquote, urlsplit

import pytest

from routing.config import parse_config
from routing.exposure import (
    Entrance,
    basic_password,
    exposure_problem,
    exposure_warning,
    is_loopback,
    key_matches,
    proxy_url,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"])
def test_loopback_binds(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "fe80::1%eth0", "myhost.lan", "example.com"])
def test_binds_beyond_loopback(host):
    # A name may resolve to anything, and "" is every interface.
    assert not is_loopback(host)


LISTENER = Entrance("the API listener", "127.0.0.1", 8317)
PROXY_ALL = Entrance("the interception proxy", "", 8080)


def test_loopback_entrances_need_no_keys():
    assert exposure_problem([LISTENER, Entrance("the interception proxy", "127.0.0.1", 8080)], False, False) is None


def test_an_exposed_entrance_without_keys_is_a_problem_naming_it_and_the_fixes():
    problem = exposure_problem([LISTENER, PROXY_ALL], has_keys=False, opt_out=False)
    assert problem == (
        "api-keys: required, because the interception proxy on *:8080 listens beyond loopback, "
        "where anyone who reaches it would use the credential pool; add api-keys (or set "
        "CLI_PROXY_API_KEY), listen on 127.0.0.1, or set allow-unauthenticated-exposure: true"
    )


def test_two_exposed_entrances_are_both_named():
    problem = exposure_problem([Entrance("the API listener", "::", 8317), PROXY_ALL], False, False)
    assert "the API listener on [::]:8317 and the interception proxy on *:8080 listen beyond" in problem


def test_keys_or_the_opt_out_allow_exposure_and_only_the_opt_out_warns():
    assert exposure_problem([PROXY_ALL], has_keys=True, opt_out=False) is None
    assert exposure_warning([PROXY_ALL], has_keys=True, opt_out=True) is None
    assert exposure_problem([PROXY_ALL], has_keys=False, opt_out=True) is None
    assert exposure_warning([PROXY_ALL], has_keys=False, opt_out=True).startswith(
        "WARNING: the interception proxy on *:8080 serves the credential pool to anyone"
    )


def test_the_environment_client_key_counts(monkeypatch):
    monkeypatch.setenv("CLI_PROXY_API_KEY", "from-the-environment")
    config = parse_config("host: 0.0.0.0\n")
    assert exposure_problem([Entrance("the API listener", config.host, config.port)], bool(config.client_keys), False) is None


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_password_is_read_whatever_the_user_name():
    assert basic_password(basic("cliproxy", "k:with:colons")) == "k:with:colons"
    assert basic_password(basic("anyone", "k")) == "k"
    assert basic_password("basic " + base64.b64encode(b"u:k").decode()) == "k"


@pytest.mark.parametrize("header", ["", "Bearer k", "Basic", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()])
def test_malformed_proxy_credentials_have_no_password(header):
    assert basic_password(header) is None


def test_key_matches_any_of_the_keys_and_nothing_else():
    keys = ("first-key", "second-key")
    assert key_matches("second-key", keys)
    assert not key_matches("second-ke", keys)
    assert not key_matches("", keys)
    assert not key_matches("anything", ())


def test_proxy_url_percent_encodes_the_key_and_a_shell_quoting_keeps_it():
    key = "k3y/with:@ $pecial 'chars'%"
    url = proxy_url("127.0.0.1", 8080, key)
    parts = urlsplit(url)
    assert (parts.username, parts.hostname, parts.port) == ("cliproxy", "127.0.0.1", 8080)
    assert unquote(parts.password) == key
    assert proxy_url("::1", 8080) == "http://[::1]:8080"
    echoed = subprocess.run(["bash", "-c", f"printf %s {shlex.quote(url)}"], capture_output=True, text=True).stdout
    assert echoed == url
