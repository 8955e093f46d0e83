"""The providers `cliproxy auth` knows, and the login entry point."""

from __future__ import annotations

import importlib
from types import ModuleType

from auth import providers
from auth.login.errors import LoginError, LoginTimeout, TransientLoginError
from auth.login.save import Saved, save
from auth.login.session import LoginOptions, Record, Session

# `cliproxy auth <command>` -> its flow, as the providers' `login` name it.
PROVIDERS: dict[str, ModuleType] = {
    command: importlib.import_module(p.login.module) for command, p in providers.logins().items() if p.login
}

__all__ = [
    "PROVIDERS", "LoginError", "LoginOptions", "LoginTimeout", "Record", "Saved", "Session",
    "TransientLoginError", "login",
]


def login(provider: str, session: Session) -> tuple[Record, Saved]:
    """Run `provider`'s login and write its file. Nothing is written unless it all succeeds."""
    session.provider = provider
    flow = PROVIDERS.get(provider)
    if flow is None:  # registered after this module was imported
        flow = importlib.import_module(providers.logins()[provider].login.module)  # type: ignore[union-attr]
    record = flow.login(session)
    return record, save(session.auth_dir, record)
