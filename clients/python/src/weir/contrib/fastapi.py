"""FastAPI (Starlette) rate limiting backed by weir's binary protocol.

Set the client up in ``lifespan`` and put it on ``app.state.weir``::

    @asynccontextmanager
    async def lifespan(app):
        async with AsyncClient("127.0.0.1", 7701, failure_mode="open") as client:
            app.state.weir = client
            yield

Per route or router, as a dependency::

    @app.get("/orders", dependencies=[Depends(RateLimit("per_user", key=keys.user()))])

or receive the decision with ``Annotated[Decision, Depends(RateLimit(...))]``.
App-wide, as pure ASGI middleware: ``app.add_middleware(RateLimitMiddleware,
rules=[Rule(policy="per_ip", key=keys.ip())])``.

Denials are 429 with ``Retry-After`` and the rate-limit headers; allowed
responses carry the headers too. A client that sends ``Accept:
application/problem+json`` gets weir's RFC 9457 problem details instead of
``{"detail": ...}``: from the middleware as it is, from a dependency once
the app routes :class:`RateLimited` to :func:`rate_limited_handler`
(``app.add_exception_handler(RateLimited, rate_limited_handler)``).

A request that holds a slot of a concurrency limit releases it when its
response has been sent, also after an exception, once a streaming body
ends, and when the request is cancelled (a lease that cannot be released
lapses on its own). Shadow limits that would have denied are logged at debug
level; the decision (``request.state.weir_decisions``) carries them.

A rule with ``reserve=True`` reserves its cost as an estimate; the route
then charges what the request really cost with ``await settle(request,
cost)`` (tokens of an LLM reply, say). Unsettled, the estimate stands.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weir import endpoints, ip
from weir.aio import AsyncClient
from weir.checks import Check, Limit
from weir.decision import PROBLEM_JSON, BatchDecision, Decision, HeaderStyle, Settled, accepts_problem

KeyFunction = Callable[[Request], dict[str, str] | Awaitable[dict[str, str] | None] | None]
TierFunction = Callable[[Request], str | Awaitable[str | None] | None]

logger = logging.getLogger("weir")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _endpoint(request: Request) -> str:
    route = request.scope.get("route")
    return endpoints.spell(request.method, getattr(route, "path", None) or request.url.path)


class keys:
    """Key functions: each returns a callable ``request -> key dict`` (or
    ``None`` to skip limiting that request)."""

    @staticmethod
    def ip(trusted_proxies: Sequence[str] = ()) -> KeyFunction:
        """The client IP; ``X-Forwarded-For`` only from trusted proxies."""
        trusted = ip.networks(trusted_proxies)

        def key(request: Request) -> dict[str, str]:
            remote = request.client.host if request.client else ""
            # Every line: a proxy may add one of its own.
            forwarded = request.headers.getlist("x-forwarded-for")
            return {"ip": ip.client_ip(remote, forwarded, trusted)}

        return key

    @staticmethod
    def user(get: Callable[[Request], Any] = lambda r: getattr(r.state, "user", None)) -> KeyFunction:
        """The user, from ``get(request)`` (default ``request.state.user``);
        requests without one are not limited by this key."""

        def key(request: Request) -> dict[str, str] | None:
            user = get(request)
            return None if user is None else {"user": str(user)}

        return key

    @staticmethod
    def token(header: str = "authorization") -> KeyFunction:
        """The API token in ``header``, without a scheme word such as
        ``Bearer``; requests without one are not limited by this key."""

        def key(request: Request) -> dict[str, str] | None:
            token = ip.bearer_token(request.headers.get(header))
            return None if token is None else {"token": token}

        return key

    @staticmethod
    def endpoint() -> KeyFunction:
        """``METHOD /route/{param}``, from the route's path template (``GET
        /orders/{order_id}``), so ids do not make a key per resource; spelled
        as the DRF adapter spells it (:mod:`weir.endpoints`)."""

        def key(request: Request) -> dict[str, str]:
            return {"endpoint": _endpoint(request)}

        return key

    @staticmethod
    def combine(*functions: KeyFunction) -> KeyFunction:
        """All of ``functions``' attributes together; ``None`` if any is."""

        async def key(request: Request) -> dict[str, str] | None:
            merged: dict[str, str] = {}
            for function in functions:
                part = await _maybe_await(function(request))
                if part is None:
                    return None
                merged.update(part)
            return merged

        return key


@dataclass
class Rule:
    """What to check: a weir ``policy`` (or ``namespace`` with inline
    ``limits``), keyed by ``key``, with an optional tier and cost (with
    ``reserve``, an estimate to :func:`settle` later). For the middleware,
    ``path_prefix`` and ``methods`` say which requests."""

    key: KeyFunction
    policy: str | None = None
    namespace: str | None = None
    limits: Sequence[Limit] = ()
    tier: TierFunction | None = None
    cost: int | None = None
    path_prefix: str = "/"
    methods: Sequence[str] | None = None
    reserve: bool = False

    def __post_init__(self) -> None:
        if (self.policy is None) == (self.namespace is None or not self.limits):
            raise ValueError("give either policy, or namespace with limits")

    def matches(self, request: Request) -> bool:
        methods = self.methods
        return request.url.path.startswith(self.path_prefix) and (
            methods is None or request.method in methods
        )

    async def check_for(self, request: Request) -> Check | None:
        key = await _maybe_await(self.key(request))
        if key is None:
            logger.debug("weir: %s skipped: its key function found no key", self.policy or self.namespace)
            return None
        if self.policy is None:
            limits = list(self.limits)
            return Check.inline(self.namespace or "", key, limits, cost=self.cost, reserve=self.reserve)
        tier = await _maybe_await(self.tier(request)) if self.tier else None
        # The endpoint picks the policy's endpoint rule (cost, limits).
        key = {"endpoint": _endpoint(request), **key}
        return Check.for_policy(self.policy, key, tier=tier, cost=self.cost, reserve=self.reserve)


def _client(request: Request, attr: str) -> AsyncClient:
    client = getattr(request.app.state, attr, None)
    if client is None:
        raise RuntimeError(f"no weir client on app.state.{attr}: create one in the app's lifespan")
    return client


def _wants_problem(request: Request) -> bool:
    return accepts_problem(request.headers.get("accept", ""))


def _seen(request: Request, decisions: Sequence[Decision]) -> None:
    """Keeps the decisions on ``request.state.weir_decisions`` for the app,
    and logs what shadow limits would have denied."""
    for decision in decisions:
        decision.log_shadow_denied()
    seen = getattr(request.state, "weir_decisions", None) or []
    request.state.weir_decisions = [*seen, *decisions]


async def _release(client: AsyncClient, decisions: Sequence[Decision]) -> None:
    """Releases the leases of ``decisions``, shielded so that a cancelled
    request still frees its slots."""
    leases = [decision.lease for decision in decisions if decision.lease]
    if not leases:
        return
    with anyio.CancelScope(shield=True):
        for lease in leases:
            await client.release(lease)


class RateLimited(HTTPException):
    """The 429 a :class:`RateLimit` dependency raises: the decision's
    headers, and the decision itself (with weir's problem details when the
    client accepts them). FastAPI answers it as any ``HTTPException``
    unless the app routes it to :func:`rate_limited_handler`."""

    def __init__(self, decision: Decision, headers: dict[str, str]) -> None:
        super().__init__(status_code=429, detail="rate limit exceeded", headers=headers)
        self.decision = decision


async def rate_limited_handler(request: Request, exc: Exception) -> Response:
    """Answers a :class:`RateLimited` as weir's problem details for a
    client that accepts them, else as FastAPI answers an ``HTTPException``."""
    assert isinstance(exc, RateLimited)
    problem = exc.decision.problem
    if problem is not None and _wants_problem(request):
        return JSONResponse(problem, status_code=429, headers=exc.headers, media_type=PROBLEM_JSON)
    return JSONResponse({"detail": exc.detail}, status_code=429, headers=exc.headers)


class RateLimit:
    """A FastAPI dependency that checks one rule and returns its
    :class:`~weir.Decision` (a pass-through decision when the key function
    returns ``None``). Raises :class:`RateLimited` (a 429 ``HTTPException``
    with headers) when denied; sets the headers on the response when
    allowed, and releases the request's concurrency slot once the response
    is sent (FastAPI 0.118 or later runs that after the response).

    ``RateLimit("per_user", key=keys.user(), tier=plan_of)`` or
    ``RateLimit(namespace="search", limits=[Limit.sliding_window("10/s")],
    key=keys.ip())``.
    """

    def __init__(
        self,
        policy: str | None = None,
        *,
        key: KeyFunction,
        namespace: str | None = None,
        limits: Sequence[Limit] = (),
        tier: TierFunction | None = None,
        cost: int | None = None,
        reserve: bool = False,
        headers: HeaderStyle = "both",
        client: str = "weir",
    ) -> None:
        self.rule = Rule(
            key=key, policy=policy, namespace=namespace, limits=limits, tier=tier, cost=cost, reserve=reserve
        )
        self.headers: HeaderStyle = headers
        self.client = client

    async def __call__(self, request: Request, response: Response) -> AsyncIterator[Decision]:
        check = await self.rule.check_for(request)
        if check is None:
            yield Decision(allowed=True, source="skipped")
            return
        client = _client(request, self.client)
        decision = await client.check(check, problem=_wants_problem(request))
        _seen(request, [decision])
        headers = decision.headers(self.headers)
        if not decision.allowed:
            raise RateLimited(decision, headers)
        response.headers.update(headers)
        try:
            yield decision
        finally:
            await _release(client, [decision])


async def settle(request: Request, cost: int, *, client: str = "weir") -> list[Settled]:
    """Charges the actual ``cost`` of ``request`` to each check that reserved
    for it (a :class:`RateLimit` or :class:`Rule` with ``reserve=True``):
    over-use is counted, under-use given back. Each reservation is settled
    once; a second call settles nothing. Without weir, nothing is settled.

    Raises:
        WeirRequestError: weir refused a reservation (lapsed, say).
    """
    weir = _client(request, client)
    settled = []
    for decision in getattr(request.state, "weir_decisions", None) or []:
        reservation = decision.reservation
        done = getattr(request.state, "weir_settled", None) or set()
        if reservation is None or reservation in done:
            continue
        request.state.weir_settled = done | {reservation}
        answer = await weir.settle(reservation, cost)
        if answer is not None:
            settled.append(answer)
    return settled


class RateLimitMiddleware:
    """Pure ASGI middleware for app-wide rules. The rules matching a request
    are checked in one atomic batch: all counted, or none. A denial is
    answered here with a JSON 429 (problem details for a client that accepts
    them); otherwise the headers are added to the app's response, and the
    batch's concurrency slots are released once the response is sent."""

    def __init__(
        self, app: ASGIApp, *, rules: Sequence[Rule], headers: HeaderStyle = "both", client: str = "weir"
    ) -> None:
        self.app = app
        self.rules = list(rules)
        self.headers: HeaderStyle = headers
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        checks = [
            check for rule in self.rules if rule.matches(request) and (check := await rule.check_for(request))
        ]
        if not checks:
            await self.app(scope, receive, send)
            return
        client = _client(request, self.client)
        wants_problem = _wants_problem(request)
        batch: BatchDecision = await client.check_batch(checks, problem=wants_problem)
        _seen(request, batch.decisions)
        headline = batch.headline()
        headers = headline.headers(self.headers) if headline else {}
        if not batch.allowed:
            await _deny(send, headers, batch.problem if wants_problem else None)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                present = {name.lower() for name, _ in message.get("headers", [])}
                # A route's own limit (a RateLimit dependency) is the more
                # specific one: its headers win.
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode())
                    for k, v in headers.items()
                    if k.lower().encode() not in present
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            await _release(client, batch.decisions)


async def _deny(send: Send, headers: dict[str, str], problem: dict[str, Any] | None) -> None:
    """Answers a 429: weir's problem details when given, else ``detail``."""
    body = json.dumps(problem if problem is not None else {"detail": "rate limit exceeded"}).encode()
    media_type = PROBLEM_JSON if problem is not None else "application/json"
    raw = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 429, "headers": raw})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "KeyFunction",
    "RateLimit",
    "RateLimitMiddleware",
    "RateLimited",
    "Rule",
    "keys",
    "rate_limited_handler",
    "settle",
]
