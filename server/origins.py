"""Whether a socket's Host and Origin headers name this server: pure functions over header values.

A DNS-rebinding page's requests carry its own name in Host (and Origin); another web page's carry
its own Origin. Both are refused before the socket says anything. Programs that send no Origin
are let through with a valid Host: Origin is a defence against other web pages, and the token
still decides who may do what. docs/protocol.md (Opening) states the rule.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from masklog.server.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Origin = tuple[str, str, int]  # scheme, host, port
HostMatch = Literal["public", "local"]


def parse_origin(url: str) -> Origin | None:
    """(scheme, host, port) of an origin or URL, lower-case, with the scheme's default port
    filled in; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host.lower()
    return scheme, host, port or DEFAULT_PORTS[scheme]


def host_allowed(host_header: str | None, local: tuple[str, int] | None, settings: Settings) -> HostMatch | None:
    """The Host header names this server: one of its public origins, or, on the port the
    connection arrived on (`local`: address and port), a loopback name, the configured bind host
    or the address the connection arrived on. Returns how it was allowed, or None."""
    if not host_header:
        return None
    try:
        explicit_port = urlsplit(f"http://{host_header}").port
    except ValueError:
        return None
    named = parse_origin(f"http://{host_header}")
    if named is None:
        return None
    _, host, port = named
    for public in settings.public_origins:
        own = parse_origin(public)
        # A Host without a port means the default port of the scheme the client used.
        if own is not None and own[1] == host and own[2] == (explicit_port or DEFAULT_PORTS[own[0]]):
            return "public"
    if local is None or port != local[1]:
        return None
    local_host = f"[{local[0]}]" if ":" in local[0] else local[0]
    own_names = {*LOOPBACK_NAMES, local_host.lower()}
    if settings.host not in ("0.0.0.0", "::", ""):
        own_names.add(f"[{settings.host}]" if ":" in settings.host else settings.host.lower())
    return "local" if host in own_names else None


def origin_allowed(host_header: str | None, origin_header: str | None, local: tuple[str, int] | None, settings: Settings) -> bool:
    """Host names this server (see `host_allowed`) and Origin, when sent (browsers always send
    it), is this server as its Host names it (plain http: this server speaks no TLS itself), one
    of its public origins, or one of `allowed_origins`."""
    host = host_allowed(host_header, local, settings)
    if host is None:
        return False
    if origin_header is None:
        return True
    if origin_header in settings.allowed_origins:
        return True
    sent = parse_origin(origin_header)
    if sent is None:
        return False
    if any(parse_origin(public) == sent for public in settings.public_origins):
        return True
    # Reached directly (not through a public origin): the page came from this server over http.
    return host == "local" and sent == parse_origin(f"http://{host_header}")
