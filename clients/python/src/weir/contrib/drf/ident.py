"""Who is asking, in a Django request: the client IP (trusting
``X-Forwarded-For`` only from configured proxies), the API token, the
endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from django.http import HttpRequest

from weir import endpoints, ip


def client_ip(request: HttpRequest, trusted_proxies: Sequence[ip.Network]) -> str:
    """The client's address; see :mod:`weir.ip`."""
    return ip.client_ip(
        request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR"), trusted_proxies
    )


def api_token(request: HttpRequest, header: str) -> str | None:
    """The token in ``header``, without a leading scheme word."""
    return ip.bearer_token(request.headers.get(header))


def endpoint(request: HttpRequest) -> str:
    """``METHOD /route/{param}``, from the URL pattern that matched
    (``orders/<int:pk>`` gives ``GET /orders/{pk}``) rather than the raw path,
    so that ids in URLs do not make a key per resource; spelled as the
    FastAPI adapter spells it (:mod:`weir.endpoints`)."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match else None
    return endpoints.spell(request.method or "GET", route or request.path)
