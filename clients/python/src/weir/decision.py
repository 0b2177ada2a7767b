"""Decisions as weir returns them, and the rate-limit headers they imply.

:meth:`Decision.headers` builds exactly the headers weir's HTTP API sends
(``tests/test_headers.py`` compares them), so an adapter can set them on its
own responses whichever way the decision was reached.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("weir")

HeaderStyle = Literal["both", "ietf", "x", "none"]

#: Where a decision came from: weir; the failure mode that answered while
#: weir could not (``fail_open``, ``fail_closed``, ``local``); or
#: ``skipped``, when the key function found no key (an anonymous request
#: for a per-user limit) and nothing was checked.
Source = Literal["weir", "fail_open", "fail_closed", "local", "skipped"]


@dataclass(frozen=True)
class LimitReport:
    """One limit's answer."""

    name: str
    algorithm: str
    limit: int
    window_ms: int
    allowed: bool
    remaining: int
    reset_after_ms: int
    retry_after_ms: int | None
    #: ``"enforce"``, or ``"shadow"`` for a limit that is counted and
    #: reported but never decides (it is left out of the headers).
    mode: str = "enforce"
    #: A calendar quota's next reset, RFC 3339 (UTC); ``None`` otherwise.
    reset_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LimitReport:
        return cls(
            name=data["name"],
            algorithm=data["algorithm"],
            limit=data["limit"],
            window_ms=data["window_ms"],
            allowed=data["allowed"],
            remaining=data["remaining"],
            reset_after_ms=data["reset_after_ms"],
            retry_after_ms=data.get("retry_after_ms"),
            mode=data.get("mode", "enforce"),
            reset_at=data.get("reset_at"),
        )


#: The media type of problem details (RFC 9457).
PROBLEM_JSON = "application/problem+json"


def is_problem(data: dict[str, Any]) -> bool:
    """Whether weir's answer is a denial's problem details (which carry
    the decision) rather than the decision itself."""
    return "violated-policies" in data and isinstance(data.get("decision"), dict)


def accepts_problem(accept: str) -> bool:
    """Whether an ``Accept`` header value names problem details."""
    return any(part.split(";")[0].strip().lower() == PROBLEM_JSON for part in accept.split(","))


def _seconds(millis: int) -> int:
    return math.ceil(millis / 1000)


@dataclass(frozen=True)
class Decision:
    """The answer to one check."""

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_after_ms: int = 0
    retry_after_ms: int | None = None
    limits: tuple[LimitReport, ...] = field(default_factory=tuple)
    policy: str | None = None
    namespace: str | None = None
    tier: str | None = None
    cost: int = 0
    #: ``"weir"``, the failure mode that answered instead, or ``"skipped"``.
    source: Source = "weir"
    #: Shadow limits that would have denied this request (over HTTP, and
    #: the binary protocol from version 2).
    shadow_denied: tuple[str, ...] = ()
    #: When the limit reported is a calendar quota: its next reset, RFC 3339.
    reset_at: str | None = None
    #: When the check holds a slot of a concurrency limit: the id that
    #: releases it (:meth:`weir.Client.release`) once the request is done.
    lease: str | None = None
    #: When the check reserved its cost (:meth:`weir.Client.reserve`): the
    #: id that settles the actual cost (:meth:`weir.Client.settle`).
    reservation: str | None = None
    #: A denial as weir's RFC 9457 problem details (``quota-exceeded`` or
    #: ``abnormal-usage-detected``, with ``violated-policies``), for an
    #: adapter to pass through to a client that accepts them.
    problem: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], problem: dict[str, Any] | None = None) -> Decision:
        """A decision as weir's HTTP API answers it: the decision itself, or
        a denial's problem details carrying it (the binary protocol hands
        those over apart, as ``problem``)."""
        if is_problem(data):
            problem, data = data, data["decision"]
        return cls(
            problem=problem,
            allowed=data["allowed"],
            limit=data.get("limit"),
            remaining=data.get("remaining"),
            reset_after_ms=data.get("reset_after_ms", 0),
            retry_after_ms=data.get("retry_after_ms"),
            limits=tuple(LimitReport.from_json(item) for item in data.get("limits", [])),
            policy=data.get("policy"),
            namespace=data.get("namespace"),
            tier=data.get("tier"),
            cost=data.get("cost", 0),
            shadow_denied=tuple(data.get("shadow_denied", ())),
            reset_at=data.get("reset_at"),
            lease=data.get("lease"),
            reservation=data.get("reservation"),
        )

    def log_shadow_denied(self) -> None:
        """Logs at debug level the shadow limits that would have denied,
        naming the policy and never the key (a key may hold an API token):
        what both adapters do with each decision."""
        if self.shadow_denied:
            names = ", ".join(self.shadow_denied)
            log.debug(
                "weir: shadow limits %s would have denied a check of %s", names, self.policy or self.namespace
            )

    @property
    def retry_after(self) -> float | None:
        """Seconds until the request would fit, when denied."""
        return None if self.retry_after_ms is None else self.retry_after_ms / 1000

    def headers(self, style: HeaderStyle = "both") -> dict[str, str]:
        """The rate-limit headers for this decision, as weir's HTTP API
        builds them: ``RateLimit-Policy`` and ``RateLimit`` (IETF draft),
        ``X-RateLimit-*``, and ``Retry-After`` on a denial."""
        if style == "none":
            return {}
        headers: dict[str, str] = {}
        # Shadow limits decide nothing: weir leaves them out of headers.
        enforced = [r for r in self.limits if r.mode != "shadow"]
        if enforced and style in ("both", "ietf"):
            headers["RateLimit-Policy"] = ", ".join(
                f'"{r.name}";q={r.limit};w={max(1, _seconds(r.window_ms))}'
                + (';qu="concurrent-requests"' if r.algorithm == "concurrency" else "")
                for r in enforced
            )
            headers["RateLimit"] = ", ".join(
                f'"{r.name}";r={r.remaining};t={_seconds(r.reset_after_ms)}' for r in enforced
            )
        if self.limit is not None and self.remaining is not None and style in ("both", "x"):
            headers["X-RateLimit-Limit"] = str(self.limit)
            headers["X-RateLimit-Remaining"] = str(self.remaining)
            headers["X-RateLimit-Reset"] = str(_seconds(self.reset_after_ms))
        if not self.allowed and self.retry_after_ms is not None:
            headers["Retry-After"] = str(max(1, _seconds(self.retry_after_ms)))
        return headers


@dataclass(frozen=True)
class Settled:
    """What settling a reservation did (:meth:`weir.Client.settle`)."""

    #: Units the check reserved.
    reserved: int
    #: The actual cost.
    cost: int
    #: Units charged beyond the reservation (whatever room the key had).
    charged: int
    #: Units given back.
    refunded: int
    #: The key's state afterwards, as a peek.
    decision: Decision

    @classmethod
    def from_json(cls, data: dict[str, Any], decision: Decision | None = None) -> Settled:
        """As weir's HTTP API answers; the binary protocol's reply gives its
        ``decision`` read apart."""
        return cls(
            reserved=data["reserved"],
            cost=data["cost"],
            charged=data["charged"],
            refunded=data["refunded"],
            decision=decision if decision is not None else Decision.from_json(data["decision"]),
        )


@dataclass(frozen=True)
class BatchDecision:
    """The answer to an atomic batch: all counted, or none."""

    allowed: bool
    decisions: tuple[Decision, ...]
    #: A denied batch as weir's problem details (see :attr:`Decision.problem`).
    problem: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchDecision:
        problem = data if is_problem(data) else None
        if problem is not None:
            data = problem["decision"]
        return cls(
            allowed=data["allowed"],
            decisions=tuple(Decision.from_json(item) for item in data["decisions"]),
            problem=problem,
        )

    def headline(self) -> Decision | None:
        """The decision headers should describe: the first denied one, else
        the one with the fewest units left."""
        denied = [d for d in self.decisions if not d.allowed]
        if denied:
            return denied[0]
        limited = [d for d in self.decisions if d.remaining is not None]
        return min(limited, key=lambda d: d.remaining or 0, default=None)
