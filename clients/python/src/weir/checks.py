"""What to check: a named policy, or inline limits under a namespace."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Limit:
    """An inline limit, validated by weir like a config limit."""

    algorithm: str
    rate: str
    burst: int | None = None
    name: str | None = None

    @classmethod
    def sliding_window(cls, rate: str, name: str | None = None) -> Limit:
        """At most ``rate``'s count per its period."""
        return cls("sliding_window", rate, None, name)

    @classmethod
    def token_bucket(cls, rate: str, burst: int | None = None, name: str | None = None) -> Limit:
        """Refill at ``rate`` up to ``burst``."""
        return cls("token_bucket", rate, burst, name)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"algorithm": self.algorithm, "rate": self.rate}
        if self.burst is not None:
            body["burst"] = self.burst
        if self.name is not None:
            body["name"] = self.name
        return body


@dataclass(frozen=True)
class Check:
    """One check, as sent to ``POST /v1/check``."""

    key: dict[str, str]
    policy: str | None = None
    namespace: str | None = None
    limits: tuple[Limit, ...] = field(default_factory=tuple)
    tier: str | None = None
    cost: int | None = None
    #: Reserve ``cost`` (an estimate) to settle the actual cost later: an
    #: allowed decision carries a ``reservation``.
    reserve: bool = False

    @classmethod
    def for_policy(
        cls,
        policy: str,
        key: dict[str, str],
        tier: str | None = None,
        cost: int | None = None,
        *,
        reserve: bool = False,
    ) -> Check:
        """A check against a policy from weir's config."""
        return cls(key=dict(key), policy=policy, tier=tier, cost=cost, reserve=reserve)

    @classmethod
    def inline(
        cls,
        namespace: str,
        key: dict[str, str],
        limits: list[Limit] | tuple[Limit, ...],
        cost: int | None = None,
        *,
        reserve: bool = False,
    ) -> Check:
        """A check carrying its own limits, counted under ``namespace``."""
        return cls(key=dict(key), namespace=namespace, limits=tuple(limits), cost=cost, reserve=reserve)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": self.key}
        if self.policy is not None:
            body["policy"] = self.policy
        else:
            body["namespace"] = self.namespace
            body["limits"] = [limit.to_json() for limit in self.limits]
        if self.tier is not None:
            body["tier"] = self.tier
        if self.cost is not None:
            body["cost"] = self.cost
        if self.reserve:
            body["reserve"] = True
        return body

    @property
    def identity(self) -> str:
        """Equal for equal checks: what to count once."""
        return json.dumps(self.to_json(), sort_keys=True)
