"""Size limits on what clients send, answered in the client's own API shape (431, 413).

mitmproxy itself bounds neither: it reads request headers of any size, and `body_size_limit`
(unset by default) ends an oversized request with its own HTML page and a closed connection.
So the limits are checked here, once the headers are in (`requestheaders`): nothing oversized
goes upstream, and the client's SDK reads a proper error. mitmproxy still reads the refused
body before the answer leaves; `body_size_limit` is set well above `MAX_BODY_BYTES` (unless the
user set one) so that memory stays bounded for a body larger still.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http

from addons.common import reply_error
from routing.endpoints import guess_format, match
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

# The request line and every header line together; one header line alone. Vendor front ends
# refuse far less (Cloudflare 32 KiB in all, Google's 16 KiB per line), so a call within these
# is never refused for its size here but upstream.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_LINE_BYTES = 16 * 1024
# Base64 images and long conversations: the vendors' own request limits are 20-32 MB.
MAX_BODY_BYTES = 32 * 1024 * 1024
# mitmproxy's hard stop, past which it answers with its own page.
MITMPROXY_BODY_SIZE_LIMIT = "128m"


def _header_problem(request: http.Request) -> str | None:
    total = len(request.method) + len(request.path) + 12  # "GET <target> HTTP/1.1\r\n"
    for name, value in request.headers.fields:
        line = len(name) + len(value) + 4  # ": " and "\r\n"
        if line > MAX_HEADER_LINE_BYTES:
            shown = name[:40].decode("latin-1", "replace")
            return f"the request header {shown!r} is larger than {MAX_HEADER_LINE_BYTES // 1024} KiB"
        total += line
    if total > MAX_HEADER_BYTES:
        return f"the request headers are larger than {MAX_HEADER_BYTES // 1024} KiB in all"
    return None


def _too_large(size: int) -> str:
    return f"the request body ({size} bytes) is larger than the {MAX_BODY_BYTES // (1024 * 1024)} MiB this proxy accepts"


class RequestLimits:
    def __init__(self, runtime: Runtime, is_listener_flow) -> None:
        self.runtime = runtime
        self.is_listener_flow = is_listener_flow

    def configure(self, updated: set[str]) -> None:
        if "body_size_limit" in updated and not ctx.options.body_size_limit:
            ctx.options.update(body_size_limit=MITMPROXY_BODY_SIZE_LIMIT)

    def _guarded(self, flow: http.HTTPFlow) -> bool:
        """The listener's calls and those to intercepted vendor hosts; other proxied traffic is
        not the pool's business."""
        if flow.response or flow.error or not flow.live:
            return False
        return self.is_listener_flow(flow) or flow.request.pretty_host.lower() in self.runtime.config.interception.hosts

    def _refuse(self, flow: http.HTTPFlow, status: int, message: str) -> None:
        req = flow.request
        path = req.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in req.headers.items()}
        endpoint = match(req.method, path, headers)
        host = "" if self.is_listener_flow(flow) else req.pretty_host.lower()
        reply_error(flow, endpoint.format if endpoint else guess_format(path, headers, host), status, message)
        logger.info(f"cliproxy: refused {req.method} {path[:100]}: {message}")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not self._guarded(flow):
            return
        if problem := _header_problem(flow.request):
            self._refuse(flow, 431, problem)
            return
        try:
            declared = int(flow.request.headers.get("content-length", "0"))
        except ValueError:
            return  # mitmproxy itself refuses a malformed length
        if declared > MAX_BODY_BYTES:
            self._refuse(flow, 413, _too_large(declared))

    def request(self, flow: http.HTTPFlow) -> None:
        # A body sent without a length (chunked) is only measured once read.
        if self._guarded(flow) and len(flow.request.raw_content or b"") > MAX_BODY_BYTES:
            self._refuse(flow, 413, _too_large(len(flow.request.raw_content or b"")))
