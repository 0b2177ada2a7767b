"""One spelling of an endpoint for both adapters: ``METHOD /route/{param}``.

Django writes a route as ``orders/<int:pk>/`` (or a regex,
``^orders/(?P<pk>[^/.]+)/$``), Starlette as ``/orders/{order_id:int}``. Both
become ``GET /orders/{pk}``: the method in capitals, a leading slash,
parameters in braces without their converters, no trailing slash (but for
the root). weir's endpoint rules (``endpoint = "POST /orders"``) are written
the same way, so one config serves DRF and FastAPI apps alike.
"""

from __future__ import annotations

import re

_REGEX_GROUP = re.compile(r"\(\?P<([^>]+)>(?:[^()]|\([^()]*\))*\)")
_DJANGO_PARAM = re.compile(r"<(?:[^>:]+:)?([^>]+)>")
_CONVERTER = re.compile(r"\{([^}:]+):[^}]*\}")


def spell(method: str, route: str) -> str:
    """``METHOD /route/{param}`` for a request ``method`` and a route
    template (Django's or Starlette's) or, lacking one, the raw path."""
    path = route.lstrip("^").rstrip("$")
    path = _REGEX_GROUP.sub(r"{\1}", path)
    path = _DJANGO_PARAM.sub(r"{\1}", path)
    path = _CONVERTER.sub(r"{\1}", path)
    path = "/" + path.lstrip("/")
    if len(path) > 1:
        path = path.rstrip("/")
    return f"{method.upper()} {path}"


__all__ = ["spell"]
