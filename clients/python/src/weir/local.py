"""The in-process limiter behind ``failure_mode="local"``.

When weir cannot be reached, each process enforces the limits itself: the
check's own inline limits, or a fallback rate for named policies (whose
limits live in weir's config). It is conservative in two ways: a process
never allows more than the limit (times ``share``), and a policy it knows
nothing about gets the fallback rate, by default 60 a minute. With N
processes the cluster-wide allowance is up to N times that, so set ``share``
to about 1/N where that matters. Memory is bounded by ``max_keys`` (least
recently used keys are forgotten first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from weir.checks import Check, Limit
from weir.decision import Decision, LimitReport
from weir.rates import parse_rate


class _Bucket:
    """Token bucket as GCRA, like weir's."""

    __slots__ = ("burst", "interval", "tat")

    def __init__(self, count: int, period: float, burst: int) -> None:
        self.interval = period / count
        self.burst = burst
        self.tat = 0.0

    def evaluate(self, now: float, cost: int) -> tuple[bool, int, float, float | None]:
        start = max(self.tat, now)
        after = start + cost * self.interval
        fill = self.burst * self.interval
        allowed = after - now <= fill + 1e-9
        tat = after if allowed else self.tat
        remaining = int(self.burst - max(0.0, tat - now) / self.interval)
        retry = None if allowed or cost > self.burst else after - now - fill
        return allowed, max(0, remaining), max(0.0, tat - now), retry

    def commit(self, now: float, cost: int) -> None:
        self.tat = max(self.tat, now) + cost * self.interval


class _Window:
    """Sliding window over slots of half a window, like weir's."""

    __slots__ = ("count", "head", "slots", "width")

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.width = period / 2
        self.head = 0
        self.slots = [0, 0, 0]

    def _advance(self, now: float) -> float:
        epoch = int(now // self.width)
        shift = epoch - self.head
        if shift > 0:
            self.slots = ([0] * min(shift, 3) + self.slots)[:3]
            self.head = epoch
        return (now - self.head * self.width) / self.width

    def evaluate(self, now: float, cost: int) -> tuple[bool, int, float, float | None]:
        phase = self._advance(now)
        used = self.slots[0] + self.slots[1] + (1 - phase) * self.slots[2]
        allowed = used + cost <= self.count + 1e-9
        slots = [self.slots[0] + (cost if allowed else 0), self.slots[1], self.slots[2]]
        newest = next((age for age, units in enumerate(slots) if units), None)
        # Until every counted unit has faded from the window.
        reset = 0.0 if newest is None else (1 - phase) * self.width + (2 - newest) * self.width
        # Conservative: a denied caller waits for the window to empty.
        retry = None if allowed or cost > self.count else reset
        return allowed, max(0, int(self.count - used - (cost if allowed else 0))), reset, retry

    def commit(self, now: float, cost: int) -> None:
        self._advance(now)
        self.slots[0] += cost


def _state_for(limit: Limit, share: float) -> _Bucket | _Window:
    count, period = parse_rate(limit.rate)
    scaled = max(1, math.floor(count * share))
    if limit.algorithm == "token_bucket":
        burst = max(1, math.floor((limit.burst or count) * share))
        return _Bucket(scaled, period, burst)
    return _Window(scaled, period)


class LocalLimiter:
    """In-process limits, safe to share across threads."""

    def __init__(self, fallback_rate: str = "60/minute", share: float = 1.0, max_keys: int = 10_000) -> None:
        parse_rate(fallback_rate)
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self._fallback = Limit.sliding_window(fallback_rate, name="local")
        self._share = share
        self._max_keys = max_keys
        self._states: OrderedDict[str, list[_Bucket | _Window]] = OrderedDict()
        self._lock = threading.Lock()

    def _limits(self, check: Check) -> tuple[Limit, ...]:
        return check.limits or (self._fallback,)

    def _states_for(self, check: Check) -> list[_Bucket | _Window]:
        key = check.key
        if check.policy is not None and "endpoint" in key and len(key) > 1:
            # The adapters send the endpoint with every policy check so that
            # weir picks the policy's endpoint rule; here it would split one
            # caller's limit per endpoint. Left out, unless it is the whole key.
            key = {attr: value for attr, value in key.items() if attr != "endpoint"}
        identity = Check(
            key=key, policy=check.policy, namespace=check.namespace, limits=check.limits
        ).identity
        states = self._states.get(identity)
        if states is None:
            states = [_state_for(limit, self._share) for limit in self._limits(check)]
            self._states[identity] = states
            while len(self._states) > self._max_keys:
                self._states.popitem(last=False)
        self._states.move_to_end(identity)
        return states

    def check_all(self, checks: list[Check]) -> list[Decision]:
        """Decides every check, and counts them all only if all fit."""
        now = time.monotonic()
        with self._lock:
            staged = []
            for check in checks:
                states = self._states_for(check)
                cost = 1 if check.cost is None else check.cost
                outcomes = [state.evaluate(now, cost) for state in states]
                staged.append((check, states, cost, outcomes))
            allowed = all(o[0] for _, _, _, outcomes in staged for o in outcomes)
            if allowed:
                for _, states, cost, _ in staged:
                    for state in states:
                        state.commit(now, cost)
        return [self._decision(check, outcomes, cost, allowed) for check, _, cost, outcomes in staged]

    def _decision(self, check: Check, outcomes: list, cost: int, allowed: bool) -> Decision:
        reports = []
        for limit, (fits, remaining, reset, retry) in zip(self._limits(check), outcomes, strict=True):
            count, period = parse_rate(limit.rate)
            capacity = max(1, math.floor((limit.burst or count) * self._share))
            window = (
                period
                if limit.algorithm != "token_bucket"
                else capacity * period / max(1, math.floor(count * self._share))
            )
            reports.append(
                LimitReport(
                    name=limit.name or limit.rate,
                    algorithm=limit.algorithm,
                    limit=capacity,
                    window_ms=math.ceil(window * 1000),
                    allowed=fits,
                    remaining=remaining if allowed or not fits else remaining + cost,
                    reset_after_ms=math.ceil(reset * 1000),
                    retry_after_ms=None if fits or retry is None else math.ceil(retry * 1000),
                )
            )
        if allowed:
            binding = min(reports, key=lambda r: (r.remaining, r.limit))
        else:
            denied = [r for r in reports if not r.allowed] or reports
            binding = max(
                denied, key=lambda r: r.retry_after_ms if r.retry_after_ms is not None else math.inf
            )
        return Decision(
            allowed=allowed,
            limit=binding.limit,
            remaining=binding.remaining,
            reset_after_ms=binding.reset_after_ms,
            retry_after_ms=binding.retry_after_ms if not allowed else None,
            limits=tuple(reports),
            policy=check.policy,
            namespace=check.namespace,
            tier=check.tier,
            cost=cost if allowed else 0,
            source="local",
        )
