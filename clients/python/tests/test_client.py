"""weir.Client against a real weir: decisions, batches, errors, failure
modes, fork safety, and headers identical to weir's own."""

from __future__ import annotations

import os
import uuid

import pytest
import urllib3

from weir import Check, Client, Decision, Limit, WeirRequestError


def inline(key: str, rate: str = "2/m") -> Check:
    return Check.inline("client-tests", {"user": key}, [Limit.sliding_window(rate)])


def test_checks_count_and_deny(weir_server):
    client = Client(weir_server.url)
    key = uuid.uuid4().hex
    decisions = [client.check(inline(key)) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[0].source == "weir"
    assert decisions[2].retry_after is not None and decisions[2].retry_after > 0


def test_policy_checks_and_tiers(weir_server):
    client = Client(weir_server.url)
    decision = client.check_policy("orders", {"user": uuid.uuid4().hex}, tier="paid")
    assert (decision.tier, decision.limit, decision.remaining) == ("paid", 5, 4)


def test_a_batch_counts_all_or_nothing(weir_server):
    client = Client(weir_server.url)
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    client.check(inline(b, "1/m"))
    batch = client.check_batch([inline(a), inline(b, "1/m")])
    assert not batch.allowed
    assert (
        client.check(
            Check.inline("client-tests", {"user": a}, [Limit.sliding_window("2/m")], cost=0)
        ).remaining
        == 2
    )


def test_invalid_checks_raise_rather_than_fail_open(weir_server):
    client = Client(weir_server.url, failure_mode="open")
    with pytest.raises(WeirRequestError) as raised:
        client.check_policy("no-such-policy", {"user": "x"})
    assert raised.value.code == "unknown_policy"


def test_refund_gives_units_back(weir_server):
    client = Client(weir_server.url)
    key = uuid.uuid4().hex
    client.check(inline(key))
    client.check(inline(key))
    refunded = client.refund(inline(key))
    assert refunded is not None and refunded.remaining == 1


def test_headers_match_the_ones_weir_sends(weir_server):
    http = urllib3.PoolManager()
    limits = [Limit.token_bucket("1/m", burst=2, name="burst"), Limit.sliding_window("5/h", name="hourly")]
    check = Check.inline("client-tests", {"user": uuid.uuid4().hex}, limits)
    for _ in range(3):  # allowed, allowed, denied
        raw = http.request("POST", weir_server.url + "/v1/check", json=check.to_json())
        decision = Decision.from_json(raw.json())
        sent = {
            k.lower(): v
            for k, v in raw.headers.items()
            if "ratelimit" in k.lower() or k.lower() == "retry-after"
        }
        assert {k.lower(): v for k, v in decision.headers().items()} == sent
    assert raw.status == 429 and "retry-after" in sent


def test_shadow_limits_are_reported_but_left_out_of_the_headers_as_weir_does(weir_server):
    http = urllib3.PoolManager()
    body = {
        "namespace": "client-tests",
        "key": {"user": uuid.uuid4().hex},
        "limits": [
            {"name": "hourly", "algorithm": "sliding_window", "rate": "10/h"},
            {"name": "strict", "algorithm": "sliding_window", "rate": "1/h", "mode": "shadow"},
            {"name": "running", "algorithm": "concurrency", "max": 5, "lease": "30s"},
        ],
    }
    for expected_shadow_denied in [(), ("strict",)]:
        raw = http.request("POST", weir_server.url + "/v1/check", json=body)
        decision = Decision.from_json(raw.json())
        assert raw.status == 200 and decision.allowed
        assert decision.shadow_denied == expected_shadow_denied
        assert [r.mode for r in decision.limits] == ["enforce", "shadow", "enforce"]
        sent = {k.lower(): v for k, v in raw.headers.items() if "ratelimit" in k.lower()}
        assert {k.lower(): v for k, v in decision.headers().items()} == sent
        assert "strict" not in sent["ratelimit-policy"]
        assert sent["ratelimit-policy"].endswith('"running";q=5;w=30;qu="concurrent-requests"')


def test_unreachable_weir_answers_by_failure_mode():
    dead = "http://127.0.0.1:9"
    assert Client(dead, failure_mode="open").check(inline("k")).source == "fail_open"
    closed = Client(dead, failure_mode="closed").check(inline("k"))
    assert (closed.allowed, closed.source, closed.headers()) == (False, "fail_closed", {"Retry-After": "1"})
    local = Client(dead, failure_mode="local")
    assert [local.check(inline("k")).allowed for _ in range(3)] == [True, True, False]


def test_local_mode_applies_the_fallback_rate_to_policies():
    local = Client("http://127.0.0.1:9", failure_mode="local", local_rate="2/m")
    assert [local.check_policy("any", {"user": "u"}).allowed for _ in range(3)] == [True, True, False]


def test_a_forked_child_gets_its_own_connections(weir_server):
    client = Client(weir_server.url)
    client.check(inline(uuid.uuid4().hex))
    pid = os.fork()
    if pid == 0:
        try:
            ok = client.check(inline(uuid.uuid4().hex)).source == "weir"
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_reserved_cost_is_settled_at_what_the_request_used(weir_server):
    client = Client(weir_server.url)
    check = Check.for_policy("orders", {"user": uuid.uuid4().hex}, cost=1)
    reserved = client.reserve(check)
    assert reserved.allowed and reserved.reservation
    settled = client.settle(reserved.reservation, 2)
    assert settled is not None and (settled.charged, settled.refunded) == (1, 0)
    with pytest.raises(WeirRequestError) as error:
        client.settle(reserved.reservation, 2)
    assert error.value.code == "already_settled"
