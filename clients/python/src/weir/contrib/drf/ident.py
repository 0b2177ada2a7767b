"""Who is asking: the client IP (trusting ``X-Forwarded-For`` only from
configured proxies), the user, the API token, the endpoint."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(request: HttpRequest, trusted_proxies: Sequence[Network]) -> str:
    """The address of the client.

    ``REMOTE_ADDR`` is the peer that connected. Only when that peer is a
    trusted proxy is ``X-Forwarded-For`` read, from the right: each hop a
    trusted proxy added is skipped, and the first address not in a trusted
    network is the client. A client cannot pick its own identity by sending
    the header itself, because its entries sit left of the first untrusted
    hop.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    peer = _address(remote)
    if peer is None:
        return remote or "unknown"

    def trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in trusted_proxies)

    if not trusted(peer):
        return str(peer)
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        if not trusted(address):
            return str(address)
        peer = address
    # Every hop was a trusted proxy (or the header was unusable): the
    # innermost one we could verify.
    return str(peer)


def api_token(request: HttpRequest, header: str) -> str | None:
    """The token in ``header``, without a leading scheme word such as
    ``Token`` or ``Bearer``."""
    value = request.headers.get(header)
    if not value:
        return None
    parts = value.split()
    return parts[-1] if parts else None


def endpoint(request: HttpRequest) -> str:
    """``METHOD /route``, using the URL pattern that matched
    (``GET /orders/<int:pk>``) rather than the raw path, so that ids in URLs
    do not make a key per resource."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match else None
    path = "/" + route.lstrip("^").rstrip("$") if route else request.path
    return f"{request.method} {path}"
