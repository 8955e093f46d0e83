"""`cliproxy auth <provider>`: the argument parser and handler that routing/cli.py mounts.

This is the glue between the command line and the login flows (auth/login/): it reads the proxy's
config (lazily, inside the handler, since logins are rare) and hands the flows the auth directory
and a URL rewriter (`upstream-overrides`), so that they know nothing of routing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from auth import providers

_LOGINS = {command: p.login for command, p in providers.logins().items() if p.login}
PROVIDER_NAMES = tuple(_LOGINS)
TITLES = {command: login.title for command, login in _LOGINS.items()}
# The options only one login takes: option -> (its login, its flag).
_ONLY_FOR = {
    option: (command, "--" + option.replace("_", "-"))
    for command, login in _LOGINS.items()
    for option in login.options
}


def _for(option: str) -> str:
    return _ONLY_FOR[option][0] if option in _ONLY_FOR else "?"


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        "auth",
        help="sign in to a subscription (OAuth) and save its token file in auth-dir",
        description="Sign in to a subscription and write its token file (CLIProxyAPI's format) to "
        "the auth directory of config.yaml; a running proxy starts using it by itself. Run it "
        "again to add another account.",
    )
    sub.add_argument("provider", choices=PROVIDER_NAMES, help="the subscription: " + ", ".join(PROVIDER_NAMES))
    sub.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: ./config.yaml; missing: defaults)")
    sub.add_argument("--no-browser", action="store_true", help="do not open a browser: print the address, and accept the redirect address pasted on stdin")
    sub.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS", help="how long to wait for the sign-in (default 300)")
    sub.add_argument("--callback-port", type=int, metavar="PORT", help="local port for the browser redirect (default: the provider's registered one)")
    sub.add_argument("--device", action="store_true", help=f"{_for('device')}: sign in with a device code instead of a browser redirect")
    sub.add_argument("--project-id", default="", metavar="ID[,ID...]", help=f"{_for('project_id')}: Google Cloud project(s) for Code Assist (default: discover the account's own)")
    sub.add_argument("--email", default="", help=f"{_for('email')}: the email or alias naming this account's file (it is not told)")
    sub.set_defaults(handler=run)
    return sub


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    except (AttributeError, OSError, ValueError):
        return None


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from functools import partial

    from auth.login.registry import LoginError, LoginOptions, Session, login
    from routing.command import cliproxy_command
    from routing.config import Config, ConfigError, load_config
    from routing.upstream import redirect

    err = sys.stderr
    for option, (provider, flag) in _ONLY_FOR.items():
        if getattr(args, option) and args.provider != provider:
            print(f"cliproxy auth: {flag} applies to {provider} only", file=err)
            return 2
    if args.timeout <= 0:
        print("cliproxy auth: --timeout must be a positive number of seconds", file=err)
        return 2
    if args.callback_port is not None and not 1 <= args.callback_port <= 65535:
        print("cliproxy auth: --callback-port must be between 1 and 65535", file=err)
        return 2

    path = Path(getattr(args, "config", "config.yaml")).expanduser()
    if path.exists():
        try:
            config = load_config(path)
        except ConfigError as e:
            print(e, file=err)
            return 1
    else:
        config = Config()
        print(f"No {path}: using the defaults (auth-dir {config.auth_dir}).", file=err)

    # httpx logs each request's URL at INFO; iFlow's carries the access token.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)

    options = LoginOptions(
        no_browser=args.no_browser,
        timeout=args.timeout,
        callback_port=args.callback_port,
        device=args.device,
        project_id=args.project_id,
        email=args.email,
    )
    title = TITLES[args.provider]
    session = Session(
        auth_dir=config.auth_path,
        options=options,
        rewrite=partial(redirect, overrides=config.upstream_overrides),
        stdin=_stdin_fd(),
    )
    try:
        with session:
            record, saved = login(args.provider, session)
    except KeyboardInterrupt:
        print("\nCancelled; nothing was written.", file=err)
        return 130
    except LoginError as e:
        print(f"cliproxy auth {args.provider}: {e}", file=err)
        return 1

    out = sys.stdout
    print(f"Signed in to {title} as {record.account}.", file=out)
    if saved.replaced:
        print(f"Updated {saved.path} (this account had signed in before; settings added to that file were kept).", file=out)
    else:
        print(f"Saved {saved.path} (readable by you only).", file=out)
    command = cliproxy_command()
    print(
        f"Next: a running proxy watches {saved.path.parent} and starts using this account within "
        f"seconds; otherwise start it with `{command} run` (or scripts/run). To add another "
        f"account, run `{command} auth {args.provider}` again and sign in as someone else.",
        file=out,
    )
    return 0
