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
responses carry the headers too.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weir import endpoints, ip
from weir.aio import AsyncClient
from weir.checks import Check, Limit
from weir.decision import BatchDecision, Decision, HeaderStyle

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
    ``limits``), keyed by ``key``, with an optional tier and cost. For the
    middleware, ``path_prefix`` and ``methods`` say which requests."""

    key: KeyFunction
    policy: str | None = None
    namespace: str | None = None
    limits: Sequence[Limit] = ()
    tier: TierFunction | None = None
    cost: int | None = None
    path_prefix: str = "/"
    methods: Sequence[str] | None = None

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
            return Check.inline(self.namespace or "", key, list(self.limits), cost=self.cost)
        tier = await _maybe_await(self.tier(request)) if self.tier else None
        # The endpoint picks the policy's endpoint rule (cost, limits).
        key = {"endpoint": _endpoint(request), **key}
        return Check.for_policy(self.policy, key, tier=tier, cost=self.cost)


def _client(request: Request, attr: str) -> AsyncClient:
    client = getattr(request.app.state, attr, None)
    if client is None:
        raise RuntimeError(f"no weir client on app.state.{attr}: create one in the app's lifespan")
    return client


class RateLimit:
    """A FastAPI dependency that checks one rule and returns its
    :class:`~weir.Decision` (a pass-through decision when the key function
    returns ``None``). Raises a 429 ``HTTPException`` with headers when
    denied; sets the headers on the response when allowed.

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
        headers: HeaderStyle = "both",
        client: str = "weir",
    ) -> None:
        self.rule = Rule(key=key, policy=policy, namespace=namespace, limits=limits, tier=tier, cost=cost)
        self.headers: HeaderStyle = headers
        self.client = client

    async def __call__(self, request: Request, response: Response) -> Decision:
        check = await self.rule.check_for(request)
        if check is None:
            return Decision(allowed=True, source="skipped")
        decision = await _client(request, self.client).check(check)
        headers = decision.headers(self.headers)
        if not decision.allowed:
            raise HTTPException(status_code=429, detail="rate limit exceeded", headers=headers)
        response.headers.update(headers)
        return decision


class RateLimitMiddleware:
    """Pure ASGI middleware for app-wide rules. The rules matching a request
    are checked in one atomic batch: all counted, or none. A denial is
    answered here with a JSON 429; otherwise the headers are added to the
    app's response."""

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
        batch: BatchDecision = await _client(request, self.client).check_batch(checks)
        headline = batch.headline()
        headers = headline.headers(self.headers) if headline else {}
        if not batch.allowed:
            body = json.dumps({"detail": "rate limit exceeded"}).encode()
            raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": 429, "headers": raw})
            await send({"type": "http.response.body", "body": body})
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

        await self.app(scope, receive, send_with_headers)


__all__ = ["KeyFunction", "RateLimit", "RateLimitMiddleware", "Rule", "keys"]
