"""``weir.Client``: a synchronous HTTP client for weir's API.

Safe to share across threads (urllib3's pooled keep-alive connections) and
across ``fork``: a process that finds itself with another PID than the one
that made the pool makes its own, so a client created before gunicorn forks
its workers still works. When weir cannot be reached (connection refused,
timeout, a 5xx) the client answers by its ``failure_mode`` and says so in
``Decision.source``; it then stops trying for a short, growing back-off
(0.5 s doubling to 5 s, shared with the async client in
:mod:`weir.fallback`) so that an outage does not add a timeout to every
request.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import urllib3

from weir.checks import Check
from weir.decision import PROBLEM_JSON, BatchDecision, Decision, Settled
from weir.errors import WeirRequestError
from weir.fallback import FailureMode, Fallback

log = logging.getLogger("weir")


class Client:
    """A weir HTTP client.

    Args:
        url: weir's HTTP address.
        timeout: seconds for connecting and for reading the answer.
        failure_mode: what to answer when weir cannot be reached:
            ``"open"`` allows, ``"closed"`` denies (``Retry-After``:
            ``closed_retry_after``), ``"local"`` enforces limits in-process
            (see :mod:`weir.local`).
        pool_size: keep-alive connections kept per process.
        local_rate: the in-process limit for named policies in local mode.
        local_share: the fraction of each limit a process allows in local
            mode.
        ca_bundle: for an ``https://`` URL, a PEM file of the CA
            certificates that sign weir's (default: the system's).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:7700",
        *,
        timeout: float = 0.1,
        failure_mode: FailureMode = "open",
        pool_size: int = 10,
        local_rate: str = "60/minute",
        local_share: float = 1.0,
        closed_retry_after: float = 1.0,
        ca_bundle: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be http:// or https://")
        self.url = url.rstrip("/")
        self._ca_bundle = ca_bundle
        self.timeout = timeout
        self.failure_mode: FailureMode = failure_mode
        self._pool_size = pool_size
        self._fallback = Fallback(failure_mode, local_rate, local_share, closed_retry_after)
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._pid = 0

    def _connections(self) -> urllib3.PoolManager:
        pid = os.getpid()
        pool = self._pool
        if pool is not None and self._pid == pid:
            return pool
        with self._lock:
            if self._pool is None or self._pid != pid:
                # A new process (or the first use): its own sockets and state.
                tls = {"ca_certs": self._ca_bundle} if self._ca_bundle else {}
                self._pool = urllib3.PoolManager(
                    maxsize=self._pool_size,
                    retries=False,
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                    **tls,
                )
                self._fallback.reset()
                self._pid = pid
            return self._pool

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The answer's JSON, or ``None`` when weir cannot be reached."""
        pool = self._connections()
        if self._fallback.backing_off():
            return None
        try:
            response = pool.request(
                "POST",
                self.url + path,
                body=json.dumps(body).encode(),
                # A denial comes as problem details too (carrying the
                # decision), for the adapters to pass through.
                headers={"content-type": "application/json", "accept": f"application/json, {PROBLEM_JSON}"},
            )
        except urllib3.exceptions.HTTPError as error:
            self._fallback.failed(type(error).__name__)
            return None
        if response.status >= 500:
            self._fallback.failed(f"HTTP {response.status}")
            return None
        try:
            data = json.loads(response.data)
        except ValueError:
            self._fallback.failed("an answer that is not JSON")
            return None
        self._fallback.answered()
        if response.status in (200, 429):
            return data
        raise WeirRequestError(response.status, data.get("code", "error"), data.get("error", ""))

    def check(self, check: Check) -> Decision:
        """Checks one request and counts its cost if every limit has room.

        Raises:
            WeirRequestError: weir found the check invalid.
        """
        data = self._post("/v1/check", check.to_json())
        return Decision.from_json(data) if data is not None else self._fallback.answer_one(check)

    def check_policy(
        self, policy: str, key: dict[str, str], *, tier: str | None = None, cost: int | None = None
    ) -> Decision:
        """Shorthand for :meth:`check` of :meth:`Check.for_policy`."""
        return self.check(Check.for_policy(policy, key, tier=tier, cost=cost))

    def check_batch(self, checks: Sequence[Check]) -> BatchDecision:
        """Checks several requests atomically: all counted, or none.

        Raises:
            WeirRequestError: weir found a check invalid; nothing was counted.
        """
        data = self._post("/v1/check/batch", {"checks": [c.to_json() for c in checks]})
        if data is not None:
            return BatchDecision.from_json(data)
        return self._fallback.answer_batch(checks)

    def refund(self, check: Check) -> Decision | None:
        """Gives ``check.cost`` units back (default 1); ``None`` when weir
        cannot be reached (a refund is never made up locally)."""
        data = self._post("/v1/refund", check.to_json())
        return Decision.from_json(data) if data is not None else None

    def reserve(self, check: Check) -> Decision:
        """Checks a request whose cost is known only afterwards: ``check.cost``
        is the estimate. When allowed, the decision's ``reservation`` settles
        the actual cost (:meth:`settle`) within the hour; unsettled, the
        estimate stands. Without weir, the failure mode answers (and there
        is nothing to settle)."""
        data = self._post("/v1/check", dataclasses.replace(check, reserve=True).to_json())
        return Decision.from_json(data) if data is not None else self._fallback.answer_one(check)

    def settle(self, reservation: str, cost: int) -> Settled | None:
        """Charges a reserved request's actual ``cost``: over-use is counted
        whatever room is left, under-use given back. The answer says what was
        ``charged`` and ``refunded``; ``None`` when weir cannot be reached.

        Raises:
            WeirRequestError: an unknown, settled or lapsed reservation.
        """
        data = self._post("/v1/settle", {"reservation": reservation, "cost": cost})
        return Settled.from_json(data) if data is not None else None

    def release(self, lease: str) -> Decision | None:
        """Frees the slot a check's ``lease`` holds in its concurrency
        limits, once its request is done. ``None`` when weir cannot be
        reached or no longer knows the lease (released already, lapsed):
        either way the slot is free or frees itself when the lease lapses."""
        try:
            data = self._post("/v1/release", {"lease": lease})
        except WeirRequestError as error:
            log.debug("weir: lease not released: %s", error)
            return None
        return Decision.from_json(data["decision"]) if data is not None else None

    def close(self) -> None:
        """Closes pooled connections."""
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None
