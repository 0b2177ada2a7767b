"""Django REST Framework throttles backed by weir.

Swap DRF's throttles for these import paths, add the middleware for headers::

    REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_CLASSES": [
            "weir.contrib.drf.AnonRateThrottle",
            "weir.contrib.drf.UserRateThrottle",
        ],
        "DEFAULT_THROTTLE_RATES": {"anon": "100/day", "user": "1000/day"},
    }
    MIDDLEWARE = [..., "weir.contrib.drf.RateLimitHeadersMiddleware"]
    WEIR = {"URL": "http://weir:7700", "FAILURE_MODE": "open"}

``decisions(request)`` gives a view the decisions made for its request, each
with its ``source``: weir, or the failure mode when weir could not answer.
"""

from .middleware import RateLimitHeadersMiddleware
from .throttles import (
    AnonRateThrottle,
    EndpointRateThrottle,
    PolicyThrottle,
    ScopedRateThrottle,
    TieredRateThrottle,
    TokenRateThrottle,
    UserRateThrottle,
    WeirThrottle,
    decisions,
    reset_clients,
    settle,
)

__all__ = [
    "AnonRateThrottle",
    "EndpointRateThrottle",
    "PolicyThrottle",
    "RateLimitHeadersMiddleware",
    "ScopedRateThrottle",
    "TieredRateThrottle",
    "TokenRateThrottle",
    "UserRateThrottle",
    "WeirThrottle",
    "decisions",
    "reset_clients",
    "settle",
]
