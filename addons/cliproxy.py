"""cliproxy: pooled LLM credentials behind one OpenAI / Anthropic / Gemini endpoint.

Run with `mitmdump -s addons/cliproxy.py` (or mitmweb, to inspect every flow).
"""

import sys
from pathlib import Path

# mitmproxy puts only this folder on sys.path; the packages live one level up.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from addons.authdir import AuthDirWatcher  # noqa: E402
from addons.config import LISTENER_TARGET, ConfigLoader  # noqa: E402
from addons.dispatch import Dispatcher  # noqa: E402
from addons.exposure import Exposure  # noqa: E402
from addons.intercept import Interceptor, allow_hosts  # noqa: E402
from addons.limits import RequestLimits  # noqa: E402
from addons.listener import ApiListener  # noqa: E402
from addons.listings import ModelListings  # noqa: E402
from addons.management import Management  # noqa: E402
from addons.refresh import RefreshLoop  # noqa: E402
from addons.shared import SharedState  # noqa: E402
from addons.shared_tokens import SharedTokenSync  # noqa: E402
from addons.usage import Accounting  # noqa: E402
from routing.runtime import Runtime  # noqa: E402

_runtime = Runtime()
_config = ConfigLoader(_runtime)
# First in the chain: it sets mitmproxy's listen_host before the config is checked against it,
# and refuses unauthenticated proxy clients before any other addon sees their requests.
_exposure = Exposure(_runtime)
_config.checks.append(_exposure.problem)
# Registered with the runtime before the config loads, so the auth directory loads with it.
_auth_dir = AuthDirWatcher(_runtime)
_shared = SharedState(_runtime)
_config.checks.append(_shared.problem)
_shared_tokens = SharedTokenSync(_runtime)  # after SharedState: it follows the store that one opens
_dispatcher = Dispatcher(_runtime)
_accounting = Accounting(_runtime, _config, _dispatcher)
_management = Management(_runtime, _auth_dir.rescan)
_listener = ApiListener(_runtime, _config, _dispatcher, _management)
_config.option_sources.append(lambda config: {"allow_hosts": allow_hosts(config, LISTENER_TARGET)})

addons = [
    _exposure,
    _config,
    _auth_dir,
    _shared,
    _shared_tokens,
    RefreshLoop(_runtime),
    ModelListings(_runtime),
    RequestLimits(_runtime, _listener.is_listener_flow),  # before the hooks that answer requests
    _listener,
    _management,
    Interceptor(_runtime, _dispatcher, _listener.is_listener_flow),
    _dispatcher,
    _accounting,
]
