"""The real vendor CLIs behind `HTTPS_PROXY=mitmdump -s addons/cliproxy.py`.

Claude Code (`claude -p`), Codex (`codex exec`) and Gemini CLI (`gemini -p`), at the versions pinned
in tests/cli/package.json (installed by scripts/install-clis), each with a temporary HOME of its own
and an environment built from scratch (no NO_PROXY that could exclude the vendor hosts, no CI
variables, nothing of the user's). The proxy's `upstream-overrides` send the vendor hosts to the
fake upstream on 127.0.0.1; the proxy's CA reaches the CLIs through NODE_EXTRA_CA_CERTS (Claude
Code, Gemini CLI) and CODEX_CA_CERTIFICATE (Codex).

"What the CLI sent" is the same CLI, same HOME path, same working directory, pointed at the fake
directly with its own base-URL setting: ANTHROPIC_BASE_URL, Codex's `openai_base_url` (Codex
0.171 ignores the OPENAI_BASE_URL variable), GOOGLE_GEMINI_BASE_URL. What differs between any two
runs of a CLI (random ids, timestamps) is normalised (`Cli.volatile`); the few differences that
pointing a CLI at a plain-http base URL causes are undone in `Cli.normalise`, each with its reason.

The CLIs are slow to start (Codex also tries a websocket first, ~6 s), so each run is made once
and shared by the tests that look at it. Not installed: the tests skip, or fail when CI=true.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, vendor_overrides
from tests.fakes.upstream import FakeUpstream, Recorded

CLI_DIR = ROOT / "tests" / "cli"
BIN = CLI_DIR / "node_modules" / ".bin"
RUN_TIMEOUT = 120

CLAUDE_POOL = ("sk-ant-pool-cli-AAAA", "sk-ant-pool-cli-BBBB")
CODEX_POOL = ("sk-pool-codex-cli-AAAA", "sk-pool-codex-cli-BBBB")
GEMINI_POOL = ("AIza-pool-cli-AAAA", "AIza-pool-cli-BBBB")
GEMINI_FOR_CLAUDE = "AIza-pool-cli-translate-TTTT"
CLAUDE_VIA_GEMINI = "claude-routed-to-gemini"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Transport and credential: what a proxy that swaps the key legitimately changes.
_NOT_COMPARED = frozenset({"host", "content-length", "x-api-key", "authorization", "x-goog-api-key"})


# ---------------------------------------------------------------------------------- the CLIs


@dataclass
class Cli:
    name: str
    package: str
    binary: str
    own_key: str
    pool: tuple[str, ...]
    auth_header: str  # where the CLI puts its key; the pool's key must arrive in the same place
    is_model_call: Callable[[Recorded], bool]
    needs_node: bool = True
    # The direct run keeps HTTPS_PROXY too (for the calls that do not follow the base URL).
    direct_run_keeps_proxy: bool = False
    # (pattern, replacement) applied to headers and body before comparing two runs
    volatile: list[tuple[str, str]] = field(default_factory=list)

    def prepare_home(self, home: Path, fake: FakeUpstream, direct: bool) -> dict[str, str]:
        """Write the CLI's config under `home`; return the CLI-specific environment."""
        raise NotImplementedError

    def args(self, prompt: str) -> list[str]:
        raise NotImplementedError

    def proxy_env(self, ca: Path) -> dict[str, str]:
        return {"NODE_EXTRA_CA_CERTS": str(ca)}

    def normalise(self, headers: dict[str, str], direct: bool) -> dict[str, str]:
        return headers


class ClaudeCode(Cli):
    # A fixed device id (Claude Code sends it in metadata.user_id; it is created once per HOME).
    USER_ID = "5ca1ab1e" * 8
    # Claude Code 2.1.332 sends this beta only when ANTHROPIC_BASE_URL is unset or is
    # api.anthropic.com (_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL does not cover it), so the
    # direct run cannot send it.
    FIRST_PARTY_ONLY_BETA = "mid-conversation-system-clear-at-2026-08-21"

    def prepare_home(self, home, fake, direct):
        (home / ".claude.json").write_text(json.dumps({"userID": self.USER_ID}))
        env = {
            "ANTHROPIC_API_KEY": self.own_key,
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        if direct:
            # A custom base URL otherwise makes Claude Code drop its first-party betas, headers and
            # system-prompt parts: the request would not be the one it sends to api.anthropic.com.
            env |= {"ANTHROPIC_BASE_URL": fake.base_url, "_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL": "1"}
        return env

    def args(self, prompt):
        return ["-p", prompt]

    def normalise(self, headers, direct):
        betas = [b for b in headers.get("anthropic-beta", "").split(",") if b != self.FIRST_PARTY_ONLY_BETA]
        return {**headers, "anthropic-beta": ",".join(betas)}


class Codex(Cli):
    def prepare_home(self, home, fake, direct):
        codex_home = home / ".codex"
        codex_home.mkdir()
        config = "check_for_update_on_startup = false\n"
        if direct:
            config += f'openai_base_url = "{fake.base_url}/v1"\n'
        config += "\n[analytics]\nenabled = false\n"
        (codex_home / "config.toml").write_text(config)
        # CODEX_API_KEY is the key `codex exec` sends; with only OPENAI_API_KEY (and no
        # `codex login --with-api-key`) Codex 0.171 sends no Authorization header at all.
        return {"CODEX_HOME": str(codex_home), "CODEX_API_KEY": self.own_key}

    def args(self, prompt):
        return ["exec", "--skip-git-repo-check", prompt]

    def proxy_env(self, ca):
        return {"CODEX_CA_CERTIFICATE": str(ca)}


class GeminiCli(Cli):
    def prepare_home(self, home, fake, direct):
        (home / ".gemini").mkdir()
        settings = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},  # no usage logging to play.googleapis.com
        }
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
        env = {"GEMINI_API_KEY": self.own_key, "GEMINI_CLI_TRUST_WORKSPACE": "true"}
        if direct:
            env["GOOGLE_GEMINI_BASE_URL"] = fake.base_url
        return env

    def args(self, prompt):
        # An explicit model: with the default ("auto") Gemini CLI first asks a classifier model for
        # a JSON complexity score, which the fake answers with plain text, and it retries for minutes.
        return ["-p", prompt, "-m", "gemini-2.5-pro"]

    def normalise(self, headers, direct):
        # undici's fetch asks for "br, gzip, deflate" over https but "gzip, deflate" over plain
        # http, which is how the direct run reaches the fake.
        if headers.get("accept-encoding") == "br, gzip, deflate":
            return {**headers, "accept-encoding": "gzip, deflate"}
        return headers


def _post_to(*suffixes: str) -> Callable[[Recorded], bool]:
    return lambda r: r.method == "POST" and r.path.endswith(suffixes)


CLAUDE = ClaudeCode(
    "claude", "@anthropic-ai/claude-code", "claude", "sk-ant-api03-the-cli-own-key-0000", CLAUDE_POOL,
    "x-api-key", _post_to("/v1/messages"), needs_node=False,  # a native binary
    # With _CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL Claude Code fetches its remote settings and
    # policy limits from api.anthropic.com itself, not from the base URL; through the proxy they
    # get the fake's 404 as in the proxied run (not 18 s of retries against an unreachable host).
    # NO_PROXY keeps the model call, to the fake's plain-http base URL, off the proxy (Bun's
    # fetch would send http:// URLs through HTTPS_PROXY too); the test checks it did.
    direct_run_keeps_proxy=True,
    volatile=[(r"cch=[0-9a-f]+", "cch=<hash>")],  # billing line: a hash over the (random) prompt id
)  # fmt: skip
CODEX = Codex(
    "codex", "@openai/codex", "codex", "sk-proj-the-cli-own-key-0000", CODEX_POOL,
    "authorization", _post_to("/v1/responses"),
    volatile=[
        (r'("create_time": )[0-9.]+', r"\g<1><time>"),
        (r'(turn_started_at_unix_ms\\?": ?)\d+', r"\g<1><time>"),
    ],
)  # fmt: skip
GEMINI = GeminiCli(
    "gemini", "@google/gemini-cli", "gemini", "AIza-the-cli-own-key-0000", GEMINI_POOL,
    "x-goog-api-key", _post_to(":generateContent", ":streamGenerateContent"),
)  # fmt: skip
CLIS = {cli.name: cli for cli in (CLAUDE, CODEX, GEMINI)}


def pinned_version(cli: Cli) -> str:
    return json.loads((CLI_DIR / "package.json").read_text())["dependencies"][cli.package]


def require(cli: Cli) -> None:
    """Skip (fail under CI=true) unless the pinned version of the CLI is installed."""
    problem = None
    manifest = CLI_DIR / "node_modules" / cli.package / "package.json"
    if not (BIN / cli.binary).exists() or not manifest.exists():
        problem = f"{cli.package} is not installed in tests/cli"
    elif (installed := json.loads(manifest.read_text())["version"]) != pinned_version(cli):
        problem = f"{cli.package} {installed} is installed, tests/cli/package.json pins {pinned_version(cli)}"
    elif cli.needs_node and shutil.which("node") is None:
        problem = f"{cli.package} needs node on PATH"
    if problem:
        message = f"{problem}; run scripts/install-clis"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


# ---------------------------------------------------------------------------------- running them


@dataclass
class Run:
    cli: Cli
    direct: bool
    result: subprocess.CompletedProcess
    requests: list[Recorded]
    proxy_log: str  # what mitmdump logged during the run

    def model_calls(self) -> list[Recorded]:
        return [r for r in self.requests if self.cli.is_model_call(r)]

    def describe(self) -> str:
        seen = "\n".join(f"  {r.method} {r.path} {r.query or ''} key={r.api_key}" for r in self.requests)
        return (
            f"{self.cli.name} ({'direct' if self.direct else 'through the proxy'}) exited {self.result.returncode}\n"
            f"--- stdout\n{self.result.stdout[-3000:]}\n--- stderr\n{self.result.stderr[-3000:]}\n"
            f"--- the fake received\n{seen}\n--- mitmdump\n{self.proxy_log[-3000:]}"
        )


class Runner:
    def __init__(self, proxy, fake: FakeUpstream, workdir: Path) -> None:
        self.proxy = proxy
        self.fake = fake
        self.workdir = workdir
        self._cache: dict[tuple[str, bool], Run] = {}

    @property
    def ca(self) -> Path:
        return self.proxy.confdir / "mitmproxy-ca-cert.pem"

    def run(self, cli: Cli, prompt: str, *extra_args: str, direct: bool = False, script=None) -> Run:
        """Run the CLI once on a fresh HOME; `script(fake)` scripts the fake before it starts."""
        require(cli)
        # The same paths for every run of a CLI: Claude Code and Gemini CLI put them in the prompt.
        home = self.workdir / f"home-{cli.name}"
        cwd = self.workdir / f"project-{cli.name}"
        for d in (home, cwd):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
        env |= cli.prepare_home(home, self.fake, direct)
        if not direct or cli.direct_run_keeps_proxy:
            proxy_url = f"http://127.0.0.1:{self.proxy.proxy_port}"
            env |= {"HTTPS_PROXY": proxy_url, "https_proxy": proxy_url, **cli.proxy_env(self.ca)}
            if direct:
                env |= {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        self.fake.clear()
        if script:
            script(self.fake)
        log_start = len(self.proxy.output())
        try:
            result = subprocess.run(
                [str(BIN / cli.binary), *cli.args(prompt), *extra_args],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=RUN_TIMEOUT, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{cli.name} did not finish in {RUN_TIMEOUT}s\nstdout: {e.stdout}\nstderr: {e.stderr}")
        return Run(cli, direct, result, list(self.fake.requests), self._settled_log()[log_start:])

    def _settled_log(self) -> str:
        """mitmdump's output once it stops growing: it logs a flow after the CLI has its answer."""
        log, deadline = self.proxy.output(), time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if (latest := self.proxy.output()) == log:
                break
            log = latest
        return log

    def once(self, cli: Cli, *, direct: bool = False) -> Run:
        """The plain prompt, run once per module and shared by the tests looking at it."""
        key = (cli.name, direct)
        if key not in self._cache:
            self._cache[key] = self.run(cli, "Say hello.", direct=direct)
        return self._cache[key]


# A probe loaded after the addon: logs each request a client makes, as the client made it (the
# dispatcher's own retries are not client requests, and mitmdump's flow lines shorten long URLs).
_PROBE = """
import logging

def requestheaders(flow):
    logging.getLogger("cli-e2e").warning(
        "cli-e2e request: %s %s%s", flow.request.method, flow.request.pretty_host, flow.request.path.split("?")[0]
    )
"""


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy, tmp_path_factory):
    probe = tmp_path_factory.mktemp("probe") / "probe.py"
    probe.write_text(_PROBE)
    proxy = make_module_proxy(
        {
            "claude-api-key": [{"api-key": key} for key in CLAUDE_POOL],
            "codex-api-key": [{"api-key": key} for key in CODEX_POOL],
            "gemini-api-key": [
                *({"api-key": key} for key in GEMINI_POOL),
                {"api-key": GEMINI_FOR_CLAUDE, "models": [{"name": "gemini-2.5-pro", "alias": CLAUDE_VIA_GEMINI}]},
            ],
            # chatgpt.com too: Codex fetches its model list from chatgpt.com/backend-api/codex/models.
            "upstream-overrides": {**vendor_overrides(fake), "chatgpt.com": fake.base_url},
            "routing": {"strategy": "fill-first"},
        },
        extra_args=("-s", str(probe)),
    )
    ca = proxy.confdir / "mitmproxy-ca-cert.pem"
    deadline = time.monotonic() + 10
    while not ca.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ca.exists(), proxy.output()
    return proxy


@pytest.fixture(scope="module")
def runner(proxy, fake, tmp_path_factory) -> Runner:
    return Runner(proxy, fake, tmp_path_factory.mktemp("cli"))


@pytest.fixture(params=list(CLIS), ids=list(CLIS))
def cli(request) -> Cli:
    cli = CLIS[request.param]
    require(cli)  # at setup, so that under CI=true a missing CLI is an error even for an xfail test
    return cli


@pytest.fixture
def claude_code() -> Cli:
    require(CLAUDE)
    return CLAUDE


@pytest.fixture
def codex() -> Cli:
    require(CODEX)
    return CODEX


def client_requests(run: Run) -> list[str]:
    """The requests the CLI itself made through the proxy, as "METHOD host/path"."""
    return re.findall(r"cli-e2e request: (\S+ \S+)$", run.proxy_log, re.MULTILINE)


def model_requests(run: Run, cli: Cli) -> list[str]:
    pattern = {
        "claude": r"POST \S+/v1/messages",
        "codex": r"POST \S+/v1/responses",
        "gemini": r"POST \S+/v1beta/models/[^:]+:(stream)?[gG]enerateContent",
    }[cli.name]
    return [r for r in client_requests(run) if re.fullmatch(pattern, r)]


# ---------------------------------------------------------------------------------- comparing


def canonical(run: Run, request: Recorded) -> tuple[dict[str, str], str]:
    """Headers and body with what differs between any two runs of a CLI normalised.

    The body is compared as JSON with sorted keys: Codex builds `client_metadata` from a hash map,
    whose key order changes from run to run.
    """
    ids: dict[str, str] = {}  # each random id becomes <idN>, numbered by first appearance

    def scrub(text: str) -> str:
        for pattern, replacement in run.cli.volatile:
            text = re.sub(pattern, replacement, text)
        return _UUID.sub(lambda m: ids.setdefault(m[0], f"<id{len(ids)}>"), text)

    headers = {k: v for k, v in sorted(request.headers.items()) if k not in _NOT_COMPARED}
    headers = {k: scrub(v) for k, v in run.cli.normalise(headers, run.direct).items()}
    body = scrub(json.dumps(request.json(), indent=1, sort_keys=True, ensure_ascii=False))
    return headers, body


def _diff(a: str, b: str) -> str:
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), "direct", "proxied", lineterm="", n=1)
    return "\n".join(line[:300] for line in list(lines)[:80])


# ---------------------------------------------------------------------------------- tests


def test_cli_prints_the_pool_answer(cli, runner, fake):
    run = runner.once(cli)
    assert run.result.returncode == 0, run.describe()
    assert fake.text in run.result.stdout, run.describe()
    calls = run.model_calls()
    assert len(calls) == 1, run.describe()
    (call,) = calls
    assert call.api_key in cli.pool, run.describe()
    assert cli.own_key not in repr(call.headers) + call.body.decode(errors="replace")
    assert len(model_requests(run, cli)) == 1, run.describe()
    # Calls that are not model calls (Claude Code's settings and policy lookups, Codex's model
    # list and websocket handshakes) are the vendor's to answer and go on as the CLI made them.
    own = [r for r in run.requests if r.api_key == cli.own_key]
    assert not [r for r in own if cli.is_model_call(r)], run.describe()


def test_only_the_credential_changes(cli, runner):
    direct, proxied = runner.once(cli, direct=True), runner.once(cli)
    assert direct.result.returncode == 0, direct.describe()
    assert proxied.result.returncode == 0, proxied.describe()
    (sent,) = direct.model_calls()
    (received,) = proxied.model_calls()
    assert not model_requests(direct, cli), "the direct run's model call went through the proxy"
    assert sent.api_key == cli.own_key and cli.own_key in sent.headers[cli.auth_header], direct.describe()
    assert any(key in received.headers.get(cli.auth_header, "") for key in cli.pool), proxied.describe()
    assert (received.method, received.path, received.query) == (sent.method, sent.path, sent.query)
    sent_headers, sent_body = canonical(direct, sent)
    received_headers, received_body = canonical(proxied, received)
    assert received_headers == sent_headers
    assert received_body == sent_body, _diff(sent_body, received_body)


def test_rate_limited_pool_key_is_invisible_to_the_cli(cli, runner, fake):
    first, second = cli.pool

    def script(fake: FakeUpstream) -> None:
        fake.fail(first, 429, headers={"Retry-After": "1"}, times=1)

    run = runner.run(cli, "Say hello again.", script=script)
    assert run.result.returncode == 0, run.describe()
    assert fake.text in run.result.stdout, run.describe()
    assert [r.api_key for r in run.model_calls()] == [first, second], run.describe()
    assert len(model_requests(run, cli)) == 1, run.describe()  # the CLI asked once, got one answer
    if cli is CLAUDE:  # the SDK inside Claude Code counts its own retries
        assert [r.headers["x-stainless-retry-count"] for r in run.model_calls()] == ["0", "0"]


def test_claude_code_completes_a_tool_use_turn(claude_code, runner, fake):
    command = "echo cliproxy-tool-$((6*7))"  # only a shell prints 42

    def script(fake: FakeUpstream) -> None:
        fake.script_tool_use(
            "RUN-THE-MARKER-TOOL",
            "Bash",
            {"command": command, "description": "Print a marker"},
            "The tool said: {result}",
        )

    run = runner.run(CLAUDE, "RUN-THE-MARKER-TOOL please.", "--allowedTools", "Bash", script=script)
    assert run.result.returncode == 0, run.describe()
    assert "The tool said: cliproxy-tool-42" in run.result.stdout, run.describe()
    ask, answer = run.model_calls()
    assert {ask.api_key, answer.api_key} <= set(CLAUDE_POOL), run.describe()
    last = answer.json()["messages"][-1]
    (result,) = [block for block in last["content"] if block.get("type") == "tool_result"]
    assert result["tool_use_id"].startswith("toolu_fake")
    assert "cliproxy-tool-42" in json.dumps(result["content"])
    assert len(model_requests(run, CLAUDE)) == 2, run.describe()


def test_claude_code_served_by_a_gemini_credential(claude_code, runner, fake):
    run = runner.run(CLAUDE, "Say hello.", "--model", CLAUDE_VIA_GEMINI)
    assert run.result.returncode == 0, run.describe()
    assert fake.text in run.result.stdout, run.describe()
    (call,) = [r for r in run.requests if GEMINI.is_model_call(r)]
    assert (call.vendor, call.api_key) == ("gemini", GEMINI_FOR_CLAUDE)
    assert call.path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    assert not [r for r in run.requests if CLAUDE.is_model_call(r)], run.describe()
    assert CLAUDE.own_key not in repr(call.headers)


def test_codex_websocket_handshake_does_not_carry_the_cli_key(codex, runner):
    """Codex tries its Responses websocket first: the proxy refuses it, so that the turn runs
    over the HTTPS call the pool serves rather than over a websocket on the CLI's own key."""
    run = runner.once(codex)
    assert run.result.returncode == 0, run.describe()
    handshakes = [r for r in run.requests if r.headers.get("upgrade", "").lower() == "websocket"]
    assert not [r for r in handshakes if r.api_key == CODEX.own_key], run.describe()
