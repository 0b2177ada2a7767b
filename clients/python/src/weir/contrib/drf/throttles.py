"""DRF throttles backed by weir.

All weir throttles of a view are decided in one atomic batch, on the first
throttle DRF asks: a request denied by one throttle is counted by none
(DRF's own throttles count it in every throttle that allowed it). The
decisions are kept on the request for :class:`RateLimitHeadersMiddleware`.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from weir.checks import Check, Limit
from weir.client import Client
from weir.decision import Decision, Settled

from . import settings
from .ident import api_token, client_ip, endpoint

log = logging.getLogger("weir.drf")

_clients: dict[tuple[Any, ...], Client] = {}
_clients_lock = threading.Lock()


def client_for(conf: settings.WeirSettings) -> Client:
    """This process's client for these settings, made on first use (after
    gunicorn has forked, and again if the settings change)."""
    key = (conf.url, conf.timeout, conf.failure_mode, conf.local_rate, conf.local_share, conf.ca_bundle)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = Client(
                    conf.url,
                    timeout=conf.timeout,
                    failure_mode=conf.failure_mode,  # type: ignore[arg-type]
                    local_rate=conf.local_rate,
                    local_share=conf.local_share,
                    ca_bundle=conf.ca_bundle,
                )
                _clients[key] = client
    return client


def reset_clients() -> None:
    """Forgets every client, as a freshly started process would."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _http_request(request: Any) -> Any:
    return getattr(request, "_request", request)


def view_decisions(request: Any, view: Any, conf: settings.WeirSettings) -> dict[str, Decision]:
    """The decisions of every weir throttle of ``view``, made in one atomic
    batch the first time they are asked for."""
    http_request = _http_request(request)
    decisions = getattr(http_request, "_weir_decisions", None)
    if decisions is not None:
        return decisions
    checks: dict[str, Check] = {}
    for throttle in view.get_throttles():
        if isinstance(throttle, WeirThrottle):
            check = throttle.check_for(request, view, conf)
            if check is not None:
                checks.setdefault(check.identity, check)
    decisions = {}
    if checks:
        batch = client_for(conf).check_batch(list(checks.values()))
        decisions = dict(zip(checks, batch.decisions, strict=True))
        # A denial's problem details, for a client that accepts them.
        http_request._weir_problem = batch.problem
        for decision in decisions.values():
            decision.log_shadow_denied()
    http_request._weir_decisions = decisions
    return decisions


def settle(request: Any, cost: int) -> list[Settled]:
    """Charges the actual ``cost`` of ``request`` (a DRF or Django request)
    to each throttle's check that reserved for it (``reserve`` on a
    :class:`PolicyThrottle`, or ``weir_reserve`` on the view): over-use is
    counted, under-use given back. Each reservation is settled once; a
    second call settles nothing. Without weir, nothing is settled.

    Raises:
        WeirRequestError: weir refused a reservation (lapsed, say).
    """
    http_request = _http_request(request)
    done: set[str] = getattr(http_request, "_weir_settled", set())
    http_request._weir_settled = done
    settled = []
    for decision in (getattr(http_request, "_weir_decisions", None) or {}).values():
        if decision.reservation is None or decision.reservation in done:
            continue
        done.add(decision.reservation)
        answer = client_for(settings.load()).settle(decision.reservation, cost)
        if answer is not None:
            settled.append(answer)
    return settled


def decisions(request: Any) -> dict[str, Decision]:
    """The decisions weir's throttles made for ``request`` (a DRF or Django
    request), by check. Each says in ``source`` who decided: ``"weir"``, or
    the failure mode (``"fail_open"``, ``"fail_closed"``, ``"local"``) when
    weir could not be reached, as the FastAPI adapter hands its decision to
    the route. Empty before the throttles ran or when none is weir's."""
    return dict(getattr(_http_request(request), "_weir_decisions", None) or {})


class WeirThrottle(BaseThrottle):
    """Base of weir's throttles: subclasses say what to check."""

    decision: Decision | None = None

    def check_for(self, request: Any, view: Any, conf: settings.WeirSettings) -> Check | None:
        """What to check for this request; ``None`` to let it through."""
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        conf = settings.load()
        if not conf.enabled:
            return True
        check = self.check_for(request, view, conf)
        if check is None:
            return True
        decisions = view_decisions(request, view, conf)
        decision = decisions.get(check.identity)
        if decision is None:
            # Not among the view's throttles (called directly): on its own.
            decision = client_for(conf).check(check)
            decisions[check.identity] = decision
        self.decision = decision
        if decision.allowed:
            return True
        if conf.shadow:
            log.warning(
                "shadow mode: would throttle %s %s under %s",
                request.method,
                request.path,
                check.policy or check.namespace,
            )
            return True
        return False

    def wait(self) -> float | None:
        return self.decision.retry_after if self.decision else None


def _safe_name(name: str) -> str:
    """A DRF scope as a weir name (A-Z a-z 0-9 _ - . : /, at most 64)."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "_", name)[:64] or "_"


def drf_rate_to_weir(rate: str) -> str:
    """A DRF rate (``"100/day"``, read as DRF reads it: the period's first
    letter) as a weir rate (``"100/86400s"``).

    Raises:
        ImproperlyConfigured: for a rate DRF would not accept either.
    """
    try:
        count, period = rate.split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]
        return f"{int(count)}/{seconds}s"
    except (ValueError, KeyError, IndexError) as error:
        raise ImproperlyConfigured(f"invalid throttle rate {rate!r}: use e.g. '100/day'") from error


def _user_or_ip(request: Any, conf: settings.WeirSettings) -> dict[str, str]:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return {"user": str(user.pk)}
    return {"ip": client_ip(_http_request(request), conf.trusted_proxies)}


class _RateThrottle(WeirThrottle):
    """DRF's SimpleRateThrottle contract on weir: a scope, a rate from
    ``DEFAULT_THROTTLE_RATES`` (read per request, not at import), counted as
    a sliding window under the namespace ``WEIR['NAMESPACE']:scope``."""

    scope: str | None = None
    #: Overrides the scope's rate, as on DRF's throttles.
    rate: str | None = None

    def get_scope(self, view: Any) -> str | None:
        return self.scope

    def get_rate(self, scope: str) -> str | None:
        if self.rate is not None:
            return self.rate
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[scope]
        except KeyError as error:
            raise ImproperlyConfigured(f"No default throttle rate set for '{scope}' scope") from error

    def key_for(self, request: Any, conf: settings.WeirSettings) -> dict[str, str] | None:
        raise NotImplementedError

    def check_for(self, request: Any, view: Any, conf: settings.WeirSettings) -> Check | None:
        scope = self.get_scope(view)
        if scope is None:
            return None
        rate = self.get_rate(scope)
        key = self.key_for(request, conf)
        if rate is None or key is None:
            return None
        name = _safe_name(scope)
        limit = Limit.sliding_window(drf_rate_to_weir(rate), name=name)
        return Check.inline(_safe_name(f"{conf.namespace}:{scope}"), key, [limit])


class AnonRateThrottle(_RateThrottle):
    """Drop-in for DRF's: anonymous requests, by client IP, at the ``anon``
    rate. Authenticated requests pass."""

    scope = "anon"

    def key_for(self, request: Any, conf: settings.WeirSettings) -> dict[str, str] | None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return None
        return {"ip": client_ip(_http_request(request), conf.trusted_proxies)}


class UserRateThrottle(_RateThrottle):
    """Drop-in for DRF's: by user, or by IP when anonymous, at the ``user``
    rate."""

    scope = "user"

    def key_for(self, request: Any, conf: settings.WeirSettings) -> dict[str, str] | None:
        return _user_or_ip(request, conf)


class ScopedRateThrottle(_RateThrottle):
    """Drop-in for DRF's: views that set ``throttle_scope``, by user or IP,
    at that scope's rate."""

    scope_attr = "throttle_scope"

    def get_scope(self, view: Any) -> str | None:
        return getattr(view, self.scope_attr, None)

    def key_for(self, request: Any, conf: settings.WeirSettings) -> dict[str, str] | None:
        return _user_or_ip(request, conf)


def _attribute(attr: str, request: Any, conf: settings.WeirSettings) -> str | None:
    http_request = _http_request(request)
    if attr == "user":
        user = getattr(request, "user", None)
        return str(user.pk) if user is not None and user.is_authenticated else None
    if attr == "ip":
        return client_ip(http_request, conf.trusted_proxies)
    if attr == "token":
        return api_token(http_request, conf.token_header)
    if attr == "endpoint":
        return endpoint(http_request)
    raise ImproperlyConfigured(f"unknown key attribute {attr!r}: use user, ip, token or endpoint")


class PolicyThrottle(WeirThrottle):
    """A weir policy from weir's own config.

    The policy is the view's ``weir_policy``, else the throttle's ``policy``,
    else ``WEIR['POLICY']``. ``key_attrs`` names the request attributes sent
    as the key (they must match the policy's); a request lacking one (no
    token, an anonymous user) is not throttled by this throttle. With
    ``tiered``, the tier comes from ``WEIR['TIER_FUNCTION']``. The cost is
    the view's ``weir_cost``, else the throttle's ``cost``, else the
    policy's. With ``reserve`` (or the view's ``weir_reserve``), the cost is
    an estimate: the view charges the actual cost with :func:`settle`.
    """

    policy: str | None = None
    key_attrs: tuple[str, ...] = ("user",)
    tiered: bool = False
    cost: int | None = None
    reserve: bool = False

    def check_for(self, request: Any, view: Any, conf: settings.WeirSettings) -> Check | None:
        policy = getattr(view, "weir_policy", None) or self.policy or conf.policy
        if policy is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs a policy: set weir_policy on the view, "
                "policy on the throttle, or WEIR['POLICY']"
            )
        key = {}
        for attr in self.key_attrs:
            value = _attribute(attr, request, conf)
            if value is None:
                return None
            key[attr] = value
        tier = None
        if self.tiered and conf.tier_function is not None:
            tier = conf.tier_function(request)
        cost = getattr(view, "weir_cost", None) or self.cost
        reserve = bool(getattr(view, "weir_reserve", self.reserve))
        # The endpoint picks the policy's endpoint rule (cost, limits).
        key = {"endpoint": endpoint(_http_request(request)), **key}
        return Check.for_policy(policy, key, tier=tier, cost=cost, reserve=reserve)


class TokenRateThrottle(PolicyThrottle):
    """Per API token (from ``WEIR['TOKEN_HEADER']``, default
    ``Authorization``, scheme word removed). Requests without one pass."""

    key_attrs = ("token",)


class EndpointRateThrottle(PolicyThrottle):
    """Per endpoint (``METHOD /route``), across all callers."""

    key_attrs = ("endpoint",)


class TieredRateThrottle(PolicyThrottle):
    """Per user, at the tier ``WEIR['TIER_FUNCTION'](request)`` returns (for
    instance the user's plan); ``None`` leaves it to weir's assignments and
    the policy's default tier."""

    key_attrs = ("user",)
    tiered = True
