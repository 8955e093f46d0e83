"""How messages name the `cliproxy` command, so that what they tell a user to type works.

`scripts/run` installs the command into the project's virtual environment, which is not on the
user's PATH unless they activated it: messages then give its full path.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def cliproxy_command() -> str:
    """`cliproxy` if that is this installation's command on PATH, else its path, shell-quoted."""
    # The interpreter's own bin directory (not resolved: a venv's python is often a symlink).
    beside = Path(sys.executable).parent / "cliproxy"
    if not beside.exists():
        return "cliproxy"
    on_path = shutil.which("cliproxy")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "cliproxy"
    return shlex.quote(str(beside))
