"""Three views: default throttles, a scoped one, and a weir policy."""

from rest_framework.response import Response
from rest_framework.views import APIView

from weir.contrib.drf import AnonRateThrottle, PolicyThrottle, ScopedRateThrottle


class Products(APIView):
    """Uses DEFAULT_THROTTLE_CLASSES: 5 a minute per anonymous IP."""

    def get(self, request):
        return Response([{"id": 1, "name": "kettle"}])


class Checkout(APIView):
    """A scope of its own, and the anonymous limit too; both are decided in
    one atomic call to weir."""

    throttle_classes = [AnonRateThrottle, ScopedRateThrottle]
    throttle_scope = "checkout"

    def post(self, request):
        return Response({"order": 42})


class PerIp(PolicyThrottle):
    """weir's built-in per_ip policy keys on the client IP."""

    key_attrs = ("ip",)


class Search(APIView):
    """A policy from weir's own config (the built-in per_ip policy, with
    free, paid and trusted tiers)."""

    throttle_classes = [PerIp]
    weir_policy = "per_ip"

    def get(self, request):
        return Response([])
