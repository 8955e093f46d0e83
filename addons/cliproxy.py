"""cliproxy: pooled LLM credentials behind one OpenAI / Anthropic / Gemini endpoint.

Run with `mitmdump -s addons/cliproxy.py` (or mitmweb, to inspect every flow).
"""

import sys
from pathlib import Path

# mitmproxy puts only this folder on sys.path; the packages live one level up.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons.config import ConfigLoader  # noqa: E402
from addons.dispatch import Dispatcher  # noqa: E402
from addons.listener import ApiListener  # noqa: E402
from routing.runtime import Runtime  # noqa: E402

_runtime = Runtime()
_config = ConfigLoader(_runtime)
_dispatcher = Dispatcher(_runtime)

addons = [_config, ApiListener(_runtime, _config, _dispatcher), _dispatcher]
