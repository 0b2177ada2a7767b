"""What a client answers when weir cannot: its ``failure_mode``.

- ``open``: allowed, no limits (so no rate-limit headers);
- ``closed``: denied, ``Retry-After`` of ``closed_retry_after`` seconds;
- ``local``: the in-process limiter of :mod:`weir.local`.

Each answer says which in ``Decision.source``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from weir.checks import Check
from weir.decision import Decision
from weir.local import LocalLimiter

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

    def reset(self) -> None:
        """Forgets local counts, as a new process (after ``fork``) should."""
        self._local = LocalLimiter(*self._local_settings)

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
