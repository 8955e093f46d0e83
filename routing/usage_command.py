"""`cliproxy usage`: what the pool served, read from the state store's usage stream when the config
names one (every instance's rows), else from this instance's usage database (read-only, so a
running proxy keeps writing)."""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from pathlib import Path

import redis
from redis.exceptions import RedisError

from auth.shared.store import CONNECT_TIMEOUT, redacted
from routing import shared_usage, usage
from routing.config import Config, ConfigError, load_config

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_COLUMNS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cached_tokens", "cached"),
    ("reasoning_tokens", "reasoning"),
    ("avg_latency_ms", "avg ms"),
)


def span(text: str) -> float:
    """Seconds in `24h`, `7d`, `90m`, `30s`, `2w`."""
    match = _SPAN.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a span like 24h, 7d or 90m")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def add_parser(commands) -> None:
    sub = commands.add_parser("usage", help="requests, errors and tokens the pool served, from the usage database")
    # SUPPRESS: given before `usage` (the top-level option) it must not be reset here.
    sub.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: ./config.yaml)")
    sub.add_argument("--since", type=span, default=span("24h"), help="how far back: 90m, 24h (default), 7d")
    sub.add_argument("--by", choices=sorted(usage.GROUPS), help="one row per model, credential, client key or provider")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(handler=run)


def _config(config_path: Path) -> tuple[Config | None, str]:
    try:
        return (load_config(config_path) if config_path.exists() else Config()), ""
    except ConfigError as e:
        return None, str(e)


def database(config_path: Path, config: Config) -> tuple[str | None, str]:
    """(the usage database's path, or None, and why not)."""
    path = config.usage_path(config_path.resolve().parent)
    if path is None:
        return None, f"{config_path}: usage-db is off, so no usage is kept"
    if path == usage.MEMORY:
        return None, f"{config_path}: usage-db is :memory:, so nothing is kept on disk"
    return path, ""


def shared(config: Config, since: float) -> tuple[sqlite3.Connection | None, str]:
    """Every instance's rows since `since` from the state store the config names (None, and
    why not, when it cannot be read)."""
    client = redis.Redis.from_url(
        config.state_store, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        return shared_usage.read_window(client, config.state_store_prefix + shared_usage.KEY, since), ""
    except (RedisError, OSError) as e:
        return None, f"state store {redacted(config.state_store)} unreachable ({type(e).__name__})"
    finally:
        client.close()


def run(args: argparse.Namespace, extra: list[str]) -> int:
    config_path = Path(args.config).expanduser()
    config, why = _config(config_path)
    if config is None:
        print(why)
        return 1
    since = time.time() - args.since
    db, source, where, note = None, "local", None, ""
    if config.state_store != "local":
        db, note = shared(config, since)
        if db is not None:
            source, where = "shared", redacted(config.state_store)
    if db is None:
        where, why = database(config_path, config)
        if where is None:
            print(f"{note}; {why}" if note else why)
            return 1
        try:
            db = usage.open_readonly(where)
        except sqlite3.Error:
            print(f"{note + '; ' if note else ''}no usage recorded at {where} yet")
            return 1
    with db:
        rows = usage.query(db, since, args.by)
        totals = usage.query(db, since) or [{name: 0 for name, _ in _COLUMNS} | {"avg_latency_ms": None}]
    db.close()
    if args.json:
        body = {"source": source, "database" if source == "local" else "store": where}
        if note:
            body["note"] = note
        print(json.dumps({**body, "since": since, "by": args.by, "rows": rows, "total": totals[0]}, indent=2))
        return 0
    print(_table(rows, totals[0], args.by))
    if source == "shared":
        print(f"source: shared, every instance's rows in the state store {where}")
    else:
        print(f"source: local, {where}{f' ({note})' if note else ''}")
    return 0


def _cell(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def _table(rows: list[dict], total: dict, by: str | None) -> str:
    head = [by or "", *(title for _, title in _COLUMNS)]
    body = [[str(row["key"]), *(_cell(row, name) for name, _ in _COLUMNS)] for row in rows] if by else []
    body.append(["total", *(_cell(total, name) for name, _ in _COLUMNS)])
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [head, *body]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )
