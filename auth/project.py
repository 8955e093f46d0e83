"""The Code Assist project of a token file that names none (auth.providers: `needs_project`).

CLIProxyAPI discovers it at first use, as the logins do: `loadCodeAssist`, then `onboardUser`
for an account without one. The login flows' own code does the calls (the provider's
`discover_project`), on a non-interactive login session whose console goes to the debug log.
The Refresher runs it once per credential and writes the project into the file.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path

import httpx

from auth import providers
from auth.credential import Credential
from auth.login.errors import LoginError
from auth.providers import redirect

logger = logging.getLogger("cliproxy")


def needs_project(cred: Credential) -> bool:
    return cred.oauth and providers.of(cred).needs_project(cred)


def discover_project(
    cred: Credential, overrides: Mapping[str, str], transport: httpx.BaseTransport | None = None
) -> str:
    """Blocking (run it in a thread). The project id; raises LoginError when there is none."""
    from auth.login.session import Session

    out = io.StringIO()
    session = Session(Path(cred.path).parent, cred.provider, rewrite=lambda url: redirect(url, overrides),
                      err=out, transport=transport)
    try:
        return providers.of(cred).discover_project(session, cred.secret)
    finally:
        session.close()
        if said := out.getvalue().strip():
            logger.debug(f"cliproxy: {cred.label}: project discovery: {said}")


__all__ = ["LoginError", "discover_project", "needs_project"]
