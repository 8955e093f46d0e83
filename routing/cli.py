"""The `cliproxy` command: run the proxy, check a config.

Logins (`cliproxy auth <provider>`) and shell setup (`cliproxy env <tool>`) join here as the
subscription and interception work lands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from routing.config import ConfigError, load_config, unknown_keys
from routing.router import Router, credentials_from_config
from translators.formats import Format

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


def check(args: argparse.Namespace, extra: list[str]) -> int:
    path = Path(args.config).expanduser()
    if not path.exists():
        print(f"{path}: no such file; copy config.example.yaml there and add your keys")
        return 1
    try:
        config = load_config(path)
    except ConfigError as e:
        print(e)
        return 1
    credentials = credentials_from_config(config)
    router = Router(credentials, force_model_prefix=config.force_model_prefix)
    print(f"{path}: valid; listener http://{config.host or '*'}:{config.port}")
    print(f"client api-keys: {len(config.client_keys) or 'none (every local client is allowed)'}")
    for cred in credentials:
        print(f"  {cred.label:48} priority {cred.priority}")
    for fmt in Format:
        models = [m.id for m in router.models((fmt,))]
        if models:
            print(f"{fmt.title}: {', '.join(models)}")
    if ignored := unknown_keys(path.read_text(encoding="utf-8")):
        print(f"ignored (not supported here): {', '.join(ignored)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cliproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="config file (default: ./config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the proxy (extra arguments go to mitmdump)").set_defaults(
        handler=run
    )
    commands.add_parser("check", help="validate the config and list credentials and models").set_defaults(
        handler=check
    )
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler is not run:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.handler(args, extra)


if __name__ == "__main__":
    sys.exit(main())
