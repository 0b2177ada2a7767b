"""Rate-limit headers on every response of a throttled view."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from weir.decision import BatchDecision

from . import settings


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-Policy``, ``RateLimit``, ``X-RateLimit-*`` (as
    ``WEIR['HEADERS']`` says) and, on 429, ``Retry-After``, from the
    decisions weir's throttles made for the request. Install it in
    ``MIDDLEWARE``; order does not matter."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        decisions = getattr(request, "_weir_decisions", None)
        if not decisions:
            return response
        batch = BatchDecision(
            allowed=all(d.allowed for d in decisions.values()),
            decisions=tuple(decisions.values()),
        )
        headline = batch.headline()
        if headline is None:
            return response
        for name, value in headline.headers(settings.load().headers).items():  # type: ignore[arg-type]
            if name == "Retry-After" and response.status_code != 429:
                continue  # shadow mode: denied, but served
            response[name] = value
        return response
