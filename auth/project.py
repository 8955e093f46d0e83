"""The Code Assist project of a Gemini CLI or Antigravity token file that names none.

CLIProxyAPI discovers it at first use, as the logins do: `loadCodeAssist`, then `onboardUser`
for an account without one. The login flows' own code does the calls (auth.login.gemini,
auth.login.antigravity), on a non-interactive login session whose console goes to the debug log.
The Refresher runs it once per credential and writes the project into the file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path

import httpx

from auth.credential import Credential
from auth.login.errors import LoginError
from auth.providers import redirect

logger = logging.getLogger("cliproxy")

PROVIDERS = frozenset({"gemini-cli", "antigravity"})


def needs_project(cred: Credential) -> bool:
    return cred.kind == "oauth" and cred.provider in PROVIDERS and not cred.project_id and bool(cred.secret)


def discover_project(
    cred: Credential, overrides: Mapping[str, str], transport: httpx.BaseTransport | None = None
) -> str:
    """Blocking (run it in a thread). The project id; raises LoginError when there is none."""
    from auth.login import antigravity, gemini
    from auth.login.session import Session

    out = io.StringIO()
    session = Session(Path(cred.path).parent, cred.provider, rewrite=lambda url: redirect(url, overrides),
                      err=out, transport=transport)
    try:
        if cred.provider == "antigravity":
            return antigravity.project_id(session, cred.secret)
        return gemini.setup_project(session, cred.secret)
    finally:
        session.close()
        if said := out.getvalue().strip():
            logger.debug(f"cliproxy: {cred.label}: project discovery: {said}")


__all__ = ["LoginError", "discover_project", "needs_project"]
