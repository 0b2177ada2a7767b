"""Python clients and framework adapters for the weir rate limiter.

- :class:`weir.Client`: a synchronous HTTP client, safe to share across
  threads and across ``fork`` (gunicorn), with a failure mode for when weir
  cannot be reached.
- :mod:`weir.contrib.drf`: Django REST Framework throttles.
"""

from weir.checks import Check, Limit
from weir.client import Client, FailureMode, WeirError, WeirRequestError
from weir.decision import BatchDecision, Decision, LimitReport

__all__ = [
    "BatchDecision",
    "Check",
    "Client",
    "Decision",
    "FailureMode",
    "Limit",
    "LimitReport",
    "WeirError",
    "WeirRequestError",
]
