"""The providers `cliproxy auth` knows, and the login entry point."""

from __future__ import annotations

from types import ModuleType

from auth.login import antigravity, claude, codex, gemini, iflow, kimi, qwen
from auth.login.errors import LoginError, LoginTimeout, TransientLoginError
from auth.login.save import Saved, save
from auth.login.session import LoginOptions, Record, Session

PROVIDERS: dict[str, ModuleType] = {
    "claude": claude,
    "codex": codex,
    "gemini": gemini,
    "antigravity": antigravity,
    "qwen": qwen,
    "iflow": iflow,
    "kimi": kimi,
}

__all__ = [
    "PROVIDERS", "LoginError", "LoginOptions", "LoginTimeout", "Record", "Saved", "Session",
    "TransientLoginError", "login",
]


def login(provider: str, session: Session) -> tuple[Record, Saved]:
    """Run `provider`'s login and write its file. Nothing is written unless it all succeeds."""
    session.provider = provider
    record = PROVIDERS[provider].login(session)
    return record, save(session.auth_dir, record)
