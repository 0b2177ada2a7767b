"""The in-process fallback limiter."""

from weir import Check
from weir.local import LocalLimiter


def test_a_policy_limit_is_one_per_caller_whatever_endpoint_the_adapter_sends():
    local = LocalLimiter(fallback_rate="2/minute")
    checks = [
        Check.for_policy("per_user", {"user": "alice", "endpoint": f"GET /things/{i}"}) for i in range(3)
    ]
    assert [local.check_all([check])[0].allowed for check in checks] == [True, True, False]


def test_a_policy_keyed_on_the_endpoint_alone_keeps_it():
    local = LocalLimiter(fallback_rate="1/minute")
    first = local.check_all([Check.for_policy("per_endpoint", {"endpoint": "GET /a"})])
    second = local.check_all([Check.for_policy("per_endpoint", {"endpoint": "GET /b"})])
    assert (first[0].allowed, second[0].allowed) == (True, True)
