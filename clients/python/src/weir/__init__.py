"""Python clients and framework adapters for the weir rate limiter.

- :class:`weir.Client`: a synchronous HTTP client, safe to share across
  threads and across ``fork`` (gunicorn), with a failure mode for when weir
  cannot be reached.
- :class:`weir.AsyncClient`: an asyncio client for the binary protocol,
  pooled and pipelined, with per-call deadlines.
- :mod:`weir.contrib.drf`: Django REST Framework throttles.
- :mod:`weir.contrib.fastapi`: a FastAPI dependency and ASGI middleware.
"""

from weir.aio import AsyncClient
from weir.checks import Check, Limit
from weir.client import Client, FailureMode
from weir.decision import BatchDecision, Decision, LimitReport, Settled
from weir.errors import ProtocolError, WeirError, WeirRequestError

__all__ = [
    "AsyncClient",
    "BatchDecision",
    "Check",
    "Client",
    "Decision",
    "FailureMode",
    "Limit",
    "LimitReport",
    "ProtocolError",
    "Settled",
    "WeirError",
    "WeirRequestError",
]
