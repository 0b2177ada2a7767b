"""System checks: ``manage.py check`` reports a missing or invalid ``WEIR``
setting and a missing headers middleware."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import Error, Warning, register

from . import settings

MIDDLEWARE = "weir.contrib.drf.RateLimitHeadersMiddleware"


@register()
def check_weir_setting(app_configs: Any, **kwargs: Any) -> list[Any]:
    found: list[Any] = []
    if not hasattr(django_settings, "WEIR"):
        found.append(
            Warning(
                "WEIR is not set: weir's throttles will call http://127.0.0.1:7700 with default settings.",
                hint="Add WEIR = {'URL': 'http://your-weir:7700', ...} to your settings.",
                id="weir.W001",
            )
        )
    else:
        found.extend(
            Error(problem, hint="See the WEIR settings in weir's README.", id="weir.E001")
            for problem in settings.problems(django_settings.WEIR)
        )
    if MIDDLEWARE not in getattr(django_settings, "MIDDLEWARE", []):
        found.append(
            Warning(
                "weir's RateLimitHeadersMiddleware is not installed: responses will lack rate-limit headers.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE.",
                id="weir.W002",
            )
        )
    return found
