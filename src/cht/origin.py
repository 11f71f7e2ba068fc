"""Which Host and Origin headers the local servers (web UI, relay) answer.

A page on another site can reach a server on loopback two ways without any token: DNS
rebinding (its own name, re-pointed at 127.0.0.1, so the request carries `Host:
evil.example`) and cross-site requests from the browser (a form POST, a WebSocket: these
carry `Origin: http://evil.example`). So a server answers only the names it is bound to,
and refuses state-changing requests and WebSockets whose Origin is another site.
A server bound to every interface (0.0.0.0) is reached by names we cannot know; it always
has a token, which a rebinding page cannot read.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from cht.config import is_loopback

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WILDCARD = {"0.0.0.0", "::", ""}


def _hostname(netloc: str) -> str:
    """`[::1]:8080` -> `::1`; `Example:80` -> `example`."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def host_allowed(host_header: str | None, bound: str) -> bool:
    """True if a request naming `host_header` may be answered by a server bound to `bound`."""
    bound = bound.lower().strip("[]")
    if bound in WILDCARD:
        return True
    if not host_header:
        return False  # HTTP/1.1 requires Host; a request without one is not from a browser page
    name = _hostname(host_header)
    allowed = {bound, socket.gethostname().lower()}
    if is_loopback(bound):
        allowed |= LOOPBACK_NAMES
    return name in allowed or name.endswith(".localhost") and is_loopback(bound)


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    """A browser names the page's origin; it must be this very server (absent: not a browser)."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or not host_header:
        return False  # `Origin: null` (sandboxed frames, file://) included
    return parts.netloc.lower() == host_header.strip().lower()
