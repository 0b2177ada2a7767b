"""Views covering each kind of throttle."""

from django.http import StreamingHttpResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from weir.contrib.drf import (
    EndpointRateThrottle,
    ScopedRateThrottle,
    TieredRateThrottle,
    TokenRateThrottle,
    UserRateThrottle,
    decisions,
    settle,
)


def plan_of(request) -> str | None:
    """WEIR['TIER_FUNCTION'] for the tests: the user's plan."""
    return getattr(request.user, "plan", None)


class Ping(APIView):
    def get(self, request):
        return Response({"ok": True})


class Sources(APIView):
    """Says who decided each throttle's check."""

    def get(self, request):
        return Response(sorted(d.source for d in decisions(request).values()))


class Uploads(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    def post(self, request):
        return Response({"uploaded": True})


class BurstThrottle(UserRateThrottle):
    scope = "burst"


class SustainedThrottle(UserRateThrottle):
    scope = "sustained"


class TwoThrottles(APIView):
    throttle_classes = [BurstThrottle, SustainedThrottle]

    def get(self, request):
        return Response({"ok": True})


class Orders(APIView):
    throttle_classes = [TieredRateThrottle]
    weir_policy = "orders"

    def post(self, request):
        return Response({"ordered": True})


class BulkOrders(Orders):
    """Costs 2: weir's endpoint rule for ``POST /bulk-orders/{batch}``."""

    def post(self, request, batch):
        return Response({"batch": batch})


class Reports(APIView):
    throttle_classes = [TokenRateThrottle]
    weir_policy = "per_token"

    def get(self, request):
        return Response({"report": []})


class Running(APIView):
    """One request in flight per token."""

    throttle_classes = [TokenRateThrottle]
    weir_policy = "running"

    def get(self, request):
        if request.query_params.get("fail"):
            raise RuntimeError("the view failed")
        if request.query_params.get("stream"):
            return StreamingHttpResponse(iter([b"a", b"b"]))
        return Response({"ok": True})


class Generate(APIView):
    """Reserves one unit per token, then charges what it really used."""

    throttle_classes = [TokenRateThrottle]
    weir_policy = "per_token"
    weir_reserve = True

    def post(self, request):
        used = int(request.query_params.get("used", "1"))
        settled = settle(request, used)
        again = settle(request, used)
        return Response({"charged": [s.charged for s in settled], "again": len(again)})


class Search(APIView):
    throttle_classes = [EndpointRateThrottle]
    weir_policy = "per_endpoint"

    def get(self, request, term):
        return Response({"term": term})
