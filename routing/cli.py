"""The `cliproxy` command: run the proxy, check a config, set a shell up for a vendor CLI, sign
a subscription in (`cliproxy auth <provider>`, in routing/auth_command.py), tell what the pool
served (`cliproxy usage`, in routing/usage_command.py), show the pool (`cliproxy status`, from
the running proxy's management API).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import ssl
import sys
from pathlib import Path

import httpx

from auth import providers
from auth.credential import Credential
from auth.store import AuthStore
from routing.auth_command import add_parser as add_auth_parser
from routing.command import cliproxy_command
from routing.config import Config, ConfigError, config_warnings, load_config
from routing.exposure import Entrance, exposure_problem, proxy_url
from routing.management import PREFIX as MANAGEMENT_PREFIX
from routing.router import Router, UnknownModel, credentials_from_config
from routing.usage_command import add_parser as add_usage_parser

DESCRIPTION = (
    "cliproxy pools LLM subscriptions and API keys behind one local endpoint that speaks the "
    "OpenAI, Anthropic and Gemini APIs, and serves vendor CLIs (Claude Code, Codex, Gemini CLI) "
    "that use it as HTTPS_PROXY. This command runs the proxy, checks its config, sets a shell up "
    "for a vendor CLI, signs subscriptions in and shows the running pool."
)
# Answered by the proxy itself when asked through its interception port (addons/exposure.py).
PROBE_URL = "http://cliproxy.invalid/"
DEFAULT_PROXY_HOST = "127.0.0.1"
DEFAULT_PROXY_PORT = 8080
DEFAULT_CONFDIR = "~/.mitmproxy"

ADDON = Path(__file__).resolve().parent.parent / "addons" / "cliproxy.py"


def _mitmdump() -> str:
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    found = shutil.which("mitmdump")
    if not found:
        sys.exit("cliproxy: mitmdump was not found; install the project (scripts/setup) first")
    return found


def run(args: argparse.Namespace, extra: list[str]) -> int:
    command = [_mitmdump(), "-s", str(ADDON), "--set", f"cliproxy_config={args.config}", *extra]
    os.execv(command[0], command)
    return 0  # not reached


def _credentials(config: Config) -> list[Credential]:
    """The config's keys and the auth directory's logins, as the proxy would load them."""
    store = AuthStore()
    store.set_directory(config.auth_path.resolve())
    return [*credentials_from_config(config), *store.credentials()]


def check(args: argparse.Namespace, extra: list[str]) -> int:
    path = Path(args.config).expanduser()
    if not path.exists():
        print(f"{path}: no such file; copy config.example.yaml there and add your keys")
        return 1
    try:
        config = load_config(path, args.config)
    except ConfigError as e:
        print(e)
        return 1
    listener = Entrance("the API listener", config.host, config.port)
    if problem := exposure_problem(
        [listener], bool(config.client_keys), config.allow_unauthenticated_exposure
    ):
        print(f"{args.config}: {problem}")
        return 1
    credentials = _credentials(config)
    router = Router(credentials, force_model_prefix=config.force_model_prefix)
    print(f"{path}: valid; listener http://{listener.address}")
    print(f"client api-keys: {len(config.client_keys) or 'none (every local client is allowed)'}")
    for cred in credentials:
        print(f"  {cred.label:48} priority {cred.priority}")
    models = [m.id for m in router.models()]
    print(f"models (reachable from every API): {', '.join(models) or 'none'}")
    for warning in config_warnings(config, path.read_text(encoding="utf-8")):
        print(f"warning: {warning}")
    print(
        "The interception proxy listens where mitmproxy's --listen-host says (127.0.0.1 unless "
        "given); beyond loopback it needs api-keys too, and asks HTTPS_PROXY clients for one."
    )
    return 0


# The vendor CLIs (auth.providers: `tool`): the CA variables each reads, and a model it asks for
# by default (to tell which credentials would serve it).
# NODE_EXTRA_CA_CERTS adds to Node's trust store; SSL_CERT_FILE and CODEX_CA_CERTIFICATE replace
# it, so those get a bundle of the system CAs plus mitmproxy's: hosts that are not intercepted
# keep their own certificates and must still verify.
TOOLS = {
    p.tool.program: (dict(p.tool.ca_variables), p.tool.model)
    for p in providers.all_providers()
    if p.tool is not None
}


def _ca_path(confdir: str) -> Path:
    return Path(confdir).expanduser() / "mitmproxy-ca-cert.pem"


def _bundle_path(confdir: str) -> Path:
    return Path(confdir).expanduser() / "cliproxy-ca-bundle.pem"


def _write_bundle(confdir: str) -> Path:
    import certifi  # a mitmproxy dependency

    system = ssl.get_default_verify_paths().cafile or certifi.where()
    bundle = _bundle_path(confdir)
    bundle.write_bytes(Path(system).read_bytes() + b"\n" + _ca_path(confdir).read_bytes())
    return bundle


def _ask_proxy(url: str) -> tuple[int | None, dict]:
    """Ask the interception proxy at `url` (an HTTPS_PROXY value) who it is: the status (None if
    nothing answers) and, from cliproxy, its JSON self-description."""
    try:
        with httpx.Client(proxy=url, trust_env=False, timeout=3) as client:
            response = client.get(PROBE_URL)
    except (httpx.HTTPError, ValueError):
        return None, {}
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) and "cliproxy" in body else {}


def _client_key(args: argparse.Namespace) -> str | None:
    path = Path(args.config).expanduser()
    try:
        config = load_config(path, args.config) if path.exists() else Config()
    except ConfigError:
        return None
    return config.client_keys[0] if config.client_keys else None


def _proxy_setting(args: argparse.Namespace) -> tuple[str | None, str]:
    """The HTTPS_PROXY value that gets a client through the interception proxy (with one of the
    config's api-keys where the proxy asks for credentials), or None, and what was found."""
    plain = proxy_url(args.proxy_host, args.proxy_port)
    status, body = _ask_proxy(plain)
    if status is None:
        return plain, f"nothing answers on {plain} yet (start it: scripts/run); assuming no credentials"
    if status != 407:
        if body:
            return plain, f"cliproxy answers on {plain}"
        return plain, f"something other than cliproxy answers on {plain}"
    key = _client_key(args)
    if key is None:
        return None, f"the proxy on {plain} asks for credentials, and {args.config} has no api-keys"
    url = proxy_url(args.proxy_host, args.proxy_port, key)
    if _ask_proxy(url)[0] != 200:
        return None, f"the proxy on {plain} refuses the first api-key of {args.config}"
    return url, f"cliproxy answers on {plain} and accepts one of the api-keys as proxy credentials"


def _env_command(args: argparse.Namespace) -> str:
    """The `cliproxy env` command line that reproduces these arguments, ready to type."""
    words = [cliproxy_command()]
    if args.config != "config.yaml":
        words += ["--config", shlex.quote(args.config)]
    words += ["env", args.tool]
    if args.proxy_host != DEFAULT_PROXY_HOST:
        words += ["--proxy-host", shlex.quote(args.proxy_host)]
    if args.proxy_port != DEFAULT_PROXY_PORT:
        words += ["--proxy-port", str(args.proxy_port)]
    if args.confdir != DEFAULT_CONFDIR:
        words += ["--confdir", shlex.quote(args.confdir)]
    return f'eval "$({" ".join(words)})"'


def env(args: argparse.Namespace, extra: list[str]) -> int:
    ca = _ca_path(args.confdir)
    if not ca.exists():
        print(
            f"cliproxy: mitmproxy's CA certificate {ca} does not exist yet. Start the proxy once "
            "(scripts/run): mitmproxy creates its CA on first start.",
            file=sys.stderr,
        )
        return 1
    url, found = _proxy_setting(args)
    if url is None:
        print(f"cliproxy: {found}", file=sys.stderr)
        return 1
    if not found.startswith("cliproxy answers"):
        print(f"cliproxy: {found}", file=sys.stderr)
    variables, _ = TOOLS[args.tool]
    files = {"ca": ca}
    if "bundle" in variables.values():
        files["bundle"] = _write_bundle(args.confdir)
    # Quoted for the shell that evaluates these lines: a key may hold any character.
    print(f"export HTTPS_PROXY={shlex.quote(url)}")
    for name, kind in variables.items():
        print(f"export {name}={shlex.quote(str(files[kind]))}")
    print(f"# then run {args.tool} as usual; its API calls are served by the cliproxy pool")
    return 0


def doctor(args: argparse.Namespace, extra: list[str]) -> int:
    """Check, for one CLI, what `env` sets up: proxy, CA trust, credentials."""
    problems = 0

    def report(ok: bool, message: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        print(f"[{'ok' if ok else '!!'}] {message}" + (f"\n     -> {fix}" if fix and not ok else ""))

    variables, model = TOOLS[args.tool]
    set_up = _env_command(args)
    ca = _ca_path(args.confdir)
    report(ca.exists(), f"mitmproxy CA at {ca}", "start the proxy once (scripts/run) to create it")
    plain = proxy_url(args.proxy_host, args.proxy_port)
    status, body = _ask_proxy(plain)
    report(
        status is not None and (status == 407 or bool(body)),
        f"cliproxy's interception proxy answers on {plain}"
        + (" and asks for proxy credentials" if status == 407 else ""),
        "start it: scripts/run" if status is None else "another program holds that port",
    )
    proxy_env = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or ""
    through = _ask_proxy(proxy_env)[0] if proxy_env else None
    # Never print the key a credentialed HTTPS_PROXY holds.
    shown = re.sub(r"//[^@/]*@", "//***@", proxy_env)
    report(
        through == 200,
        f"HTTPS_PROXY ({shown or 'unset'}) reaches cliproxy"
        + (": it asks for one of the api-keys as credentials" if through == 407 else ""),
        set_up,
    )
    expected = {"ca": ca, "bundle": _bundle_path(args.confdir)}
    for name, kind in variables.items():
        value = os.environ.get(name, "")
        report(
            bool(value) and Path(value).resolve() == expected[kind].resolve(),
            f"{name} is {value or 'unset'}",
            set_up,
        )
    path = Path(args.config).expanduser()
    try:
        config = load_config(path, args.config) if path.exists() else None
    except ConfigError as e:
        report(False, str(e))
        return 1
    if config is None:
        report(False, f"no config at {path}", "copy config.example.yaml there and add credentials")
        return 1
    router = Router(_credentials(config), force_model_prefix=config.force_model_prefix)
    try:
        routes = router.resolve(model)
    except UnknownModel:
        routes = []
    hosts = ", ".join(config.interception.hosts)
    report(bool(routes), f"credentials serving {model} (this CLI's default model): "
           + (", ".join(r.credential.label for r in routes) or "none"),
           f"add a key for it to {path}; without one, calls pass through with the CLI's own login")
    print(f"intercepted hosts: {hosts}")
    return 1 if problems else 0


MANAGEMENT_KEY_ENV = "CLIPROXY_MANAGEMENT_KEY"


def _printable(text: object) -> str:
    """A value from the proxy fit for the terminal: labels and messages are hostile strings, and
    an escape sequence in one must not drive the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _listener_url(config: Config) -> str:
    host = config.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


def _short(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _quota_text(quota: dict | None, now: float) -> str:
    if not quota or not quota.get("windows"):
        return "-"
    parts = []
    for w in quota["windows"]:
        used = w.get("used")
        text = f"{w['name']} {round(used * 100)}%" if used is not None else str(w["name"])
        if w.get("remaining") is not None and w.get("limit") is not None:
            text = f"{w['name']} {w['remaining']}/{w['limit']} left"
        if w.get("exhausted") and w.get("resets_at"):
            text += f" (resets {_short(w['resets_at'] - now)})"
        parts.append(text)
    return ", ".join(parts)


def status_table(data: dict) -> str:
    """The credential table of `cliproxy status`, from /v0/management/credentials."""
    now = data.get("now") or 0.0
    header = ("PROVIDER", "CREDENTIAL", "STATE", "QUOTA", "LAST HOUR")
    rows: list[tuple[tuple[str, ...], str]] = []
    for c in data.get("credentials", []):
        provider = c["provider"] + (f" ({c['service']})" if c.get("service") else "")
        label = c["label"] + (f" <{c['email']}>" if c.get("email") else "")
        state = c["state"] + (f" {_short(c['until'] - now)}" if c.get("until") else "")
        hour = c.get("last_hour")
        hour_text = f"{hour['requests']} req, {hour['errors']} err" if hour else "-"
        cells = tuple(_printable(v) for v in (provider, label, state, _quota_text(c.get("quota"), now), hour_text))
        rows.append((cells, _printable(c.get("detail") or "")))
    widths = [max([len(header[i]), *(len(r[0][i]) for r in rows)]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for cells, detail in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(cells, widths)).rstrip())
        if detail:
            lines.append(" " * (widths[0] + 2) + detail)
    if not rows:
        lines.append("(no credentials)")
    return "\n".join(lines)


def status(args: argparse.Namespace, extra: list[str]) -> int:
    """The pool as the running proxy sees it, from its management API."""
    import httpx

    path = Path(args.config).expanduser()
    config = None
    if path.exists():
        try:
            config = load_config(path)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 1
    url = (args.url or _listener_url(config or Config())).rstrip("/")
    secret = args.secret or os.environ.get(MANAGEMENT_KEY_ENV) or (config.remote_management.secret_key if config else "")
    if not secret or secret.startswith(("$2a$", "$2b$", "$2y$")):
        where = (
            f"{path} keeps only the key's bcrypt hash"
            if secret
            else f"set remote-management.secret-key in {path}"
        )
        print(
            f"cliproxy status: no management key: {where}; pass --secret or set {MANAGEMENT_KEY_ENV}",
            file=sys.stderr,
        )
        return 1
    try:
        # No environment proxies: HTTPS_PROXY from `cliproxy env` must not carry this call.
        response = httpx.get(
            f"{url}{MANAGEMENT_PREFIX}/credentials",
            headers={"x-management-key": secret},
            timeout=10,
            trust_env=False,
        )
    except httpx.HTTPError as e:
        print(f"cliproxy status: no proxy answers at {url} ({type(e).__name__}): is it running?", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        message = body.get("error") if isinstance(body, dict) else None
        print(
            f"cliproxy status: {url} answered HTTP {response.status_code}: {_printable(message or 'not the management API')}",
            file=sys.stderr,
        )
        return 1
    print(status_table(body))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cliproxy", description=DESCRIPTION)
    parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the proxy (mitmdump with the cliproxy addon)",
        description="Run the proxy: mitmdump with the cliproxy addon and this config. Arguments "
        "this command does not know go to mitmdump, e.g. --listen-port 8081 or --set KEY=VALUE.",
    ).set_defaults(handler=run)
    commands.add_parser(
        "check",
        help="validate the config and list credentials and models",
        description="Validate the config as the proxy would (exit status 1 with the key named if "
        "it is not valid), then list the credentials by label, never by secret, the models they "
        "serve, and the CLIProxyAPI keys this proxy ignores.",
    ).set_defaults(handler=check)
    for name, handler, text, description in (
        (
            "env",
            env,
            "print the shell lines that send a vendor CLI through the proxy",
            "Print the export lines (HTTPS_PROXY and the CA variables the CLI reads) that send a "
            "vendor CLI through the interception proxy; use them as "
            f'eval "$({cliproxy_command()} env TOOL)". Where the proxy asks for credentials (it '
            "listens beyond loopback), HTTPS_PROXY carries the first of the config's api-keys.",
        ),
        (
            "doctor",
            doctor,
            "check that a vendor CLI is set up to go through the proxy",
            "Check, for one vendor CLI, the whole path: mitmproxy's CA, the interception proxy, "
            "this shell's HTTPS_PROXY and CA variables, and the credentials that serve the CLI's "
            "default model. Prints what to fix; exit status 1 if anything needs fixing.",
        ),
    ):
        sub = commands.add_parser(name, help=text, description=description)
        sub.add_argument("tool", choices=sorted(TOOLS), help="the vendor CLI: " + ", ".join(sorted(TOOLS)))
        sub.add_argument(
            "--proxy-host",
            default=DEFAULT_PROXY_HOST,
            help=f"address to reach the interception proxy at (default {DEFAULT_PROXY_HOST})",
        )
        sub.add_argument(
            "--proxy-port",
            type=int,
            default=DEFAULT_PROXY_PORT,
            help=f"the interception proxy's port, mitmproxy's --listen-port (default {DEFAULT_PROXY_PORT})",
        )
        sub.add_argument(
            "--confdir",
            default=DEFAULT_CONFDIR,
            help=f"mitmproxy's confdir, where its CA is (default {DEFAULT_CONFDIR})",
        )
        sub.set_defaults(handler=handler)
    sub = commands.add_parser(
        "status",
        help="show every credential's state, quota and use, from the running proxy",
        description="Ask the running proxy's management API for every credential's state (ready, "
        "resting and until when, refreshing, refresh failed, disabled), the quota its upstream "
        "reported and its requests and errors in the last hour, and print them as a table. Needs "
        "remote-management.secret-key (from the config, --secret or $"
        f"{MANAGEMENT_KEY_ENV}).",
    )
    sub.add_argument("--config", default=argparse.SUPPRESS, help="config file: the listener's address and the management key")
    sub.add_argument("--url", help="the proxy's listener, e.g. http://127.0.0.1:8317 (default: from the config)")
    sub.add_argument("--secret", help=f"the management key (default: ${MANAGEMENT_KEY_ENV}, else the config's secret-key)")
    sub.set_defaults(handler=status)
    add_auth_parser(commands)
    add_usage_parser(commands)
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler is not run:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.handler(args, extra)


if __name__ == "__main__":
    sys.exit(main())
