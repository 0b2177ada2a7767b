"""Rate-limit headers on every response of a throttled view, and the
release of the slots its concurrency limits hold once the response is
done."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse

from weir.decision import PROBLEM_JSON, BatchDecision, accepts_problem

from . import settings
from .throttles import client_for


def release_leases(request: HttpRequest) -> None:
    """Releases, once, the leases the throttles' decisions hold for
    ``request``: its slots of concurrency limits (a lease that cannot be
    released lapses on its own)."""
    decisions = getattr(request, "_weir_decisions", None) or {}
    leases = [d.lease for d in decisions.values() if d.lease]
    if not leases or getattr(request, "_weir_released", False):
        return
    request._weir_released = True  # type: ignore[attr-defined]
    client = client_for(settings.load())
    for lease in leases:
        client.release(lease)


class _ReleasingBody:
    """A streaming body that releases the request's leases when it ends,
    fails, or is closed, read or not (the server closes a response whose
    client went away): a generator closed before its first item would never
    run its cleanup."""

    def __init__(self, content: Iterable[Any], request: HttpRequest) -> None:
        self._content = iter(content)
        self._request = request

    def __iter__(self) -> _ReleasingBody:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._content)
        except BaseException:
            release_leases(self._request)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._content, "close", None)
            if close is not None:
                close()
        finally:
            release_leases(self._request)


def _as_problem(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A throttled 429 as weir's problem details (RFC 9457:
    ``quota-exceeded``, or ``abnormal-usage-detected`` for a penalty tier,
    with ``violated-policies``) when the client accepts them."""
    problem = getattr(request, "_weir_problem", None)
    if (
        response.status_code != 429
        or problem is None
        or not accepts_problem(request.headers.get("Accept", ""))
    ):
        return response
    passed = HttpResponse(json.dumps(problem), status=429, content_type=PROBLEM_JSON)
    for name, value in response.items():
        if name.lower() not in ("content-type", "content-length"):
            passed[name] = value
    return passed


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-Policy``, ``RateLimit``, ``X-RateLimit-*`` (as
    ``WEIR['HEADERS']`` says) and, on 429, ``Retry-After``, from the
    decisions weir's throttles made for the request; and releases the
    request's concurrency slots once its response is done (after a
    streaming body ends, and after an exception too). Install it in
    ``MIDDLEWARE``; order does not matter."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.get_response(request)
        except BaseException:
            release_leases(request)
            raise
        if getattr(response, "streaming", False):
            response.streaming_content = _ReleasingBody(response.streaming_content, request)  # type: ignore[attr-defined]
        else:
            release_leases(request)
        decisions = getattr(request, "_weir_decisions", None)
        if not decisions:
            return response
        response = _as_problem(request, response)
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
