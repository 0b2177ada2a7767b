"""What a client answers when weir cannot: its ``failure_mode``.

- ``open``: allowed, no limits (so no rate-limit headers);
- ``closed``: denied, ``Retry-After`` of ``closed_retry_after`` seconds;
- ``local``: the in-process limiter of :mod:`weir.local`.

Each answer says which in ``Decision.source``.

Both clients also share the back-off: after weir fails to answer (down,
refusing, or hung past the timeout), a client stops asking for 0.5 s, then
1, 2 and up to 5 s while failures go on, and answers by the failure mode at
once meanwhile, so a hung weir costs one timeout per back-off, not one per
request. The first answer from weir ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

from weir.checks import Check
from weir.decision import BatchDecision, Decision
from weir.local import LocalLimiter

log = logging.getLogger("weir")

FailureMode = Literal["open", "closed", "local"]
FAILURE_MODES = ("open", "closed", "local")


class Fallback:
    """Answers checks by a failure mode."""

    def __init__(
        self,
        mode: FailureMode,
        local_rate: str = "60/minute",
        local_share: float = 1.0,
        closed_retry_after: float = 1.0,
    ) -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"failure_mode must be one of {FAILURE_MODES}, not {mode!r}")
        self.mode: FailureMode = mode
        self._local_settings = (local_rate, local_share)
        self._local = LocalLimiter(local_rate, local_share)
        self._closed_retry_after_ms = int(closed_retry_after * 1000)
        self._down_until = 0.0
        self._backoff = 0.0

    def reset(self) -> None:
        """Forgets local counts and the back-off, as a new process (after
        ``fork``) should."""
        self._local = LocalLimiter(*self._local_settings)
        self._down_until = 0.0
        self._backoff = 0.0

    def backing_off(self) -> bool:
        """Whether to answer by the failure mode without asking weir."""
        return time.monotonic() < self._down_until

    def failed(self, reason: str) -> None:
        """weir did not answer: back off, longer each time (0.5 s to 5 s)."""
        self._backoff = min(5.0, max(0.5, self._backoff * 2))
        self._down_until = time.monotonic() + self._backoff
        log.warning("weir unreachable (%s); answering %r for %.1fs", reason, self.mode, self._backoff)

    def answered(self) -> None:
        """weir answered: the back-off is over."""
        if self._backoff:
            log.info("weir reachable again")
            self._backoff = 0.0

    def answer_one(self, check: Check) -> Decision:
        """The failure mode's decision for one check."""
        return self.answer([check])[0]

    def answer_batch(self, checks: Sequence[Check]) -> BatchDecision:
        """The failure mode's answer to an atomic batch."""
        decisions = tuple(self.answer(checks))
        return BatchDecision(allowed=all(d.allowed for d in decisions), decisions=decisions)

    def answer(self, checks: Sequence[Check]) -> list[Decision]:
        if self.mode == "open":
            return [
                Decision(allowed=True, policy=c.policy, namespace=c.namespace, source="fail_open")
                for c in checks
            ]
        if self.mode == "closed":
            return [
                Decision(
                    allowed=False,
                    retry_after_ms=self._closed_retry_after_ms,
                    policy=c.policy,
                    namespace=c.namespace,
                    source="fail_closed",
                )
                for c in checks
            ]
        return self._local.check_all(list(checks))
