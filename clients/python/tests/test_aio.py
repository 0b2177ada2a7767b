"""weir.AsyncClient against the real weir binary over the binary protocol."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from weir import AsyncClient, Check, Limit, WeirRequestError


def inline(key: str, rate: str = "3/m") -> Check:
    return Check.inline("aio-tests", {"user": key}, [Limit.sliding_window(rate)])


def run(coroutine):
    return asyncio.run(coroutine)


def test_checks_peeks_refunds_and_batches(weir_server):
    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, timeout=1.0) as client:
            key = uuid.uuid4().hex
            decisions = [await client.check(inline(key)) for _ in range(4)]
            peek = await client.peek(inline(key))
            refund = await client.refund(Check.inline("aio-tests", {"user": key}, inline(key).limits, cost=1))
            # After the refund the key has room for one: the second use denies all.
            batch = await client.check_batch([inline(uuid.uuid4().hex), inline(key), inline(key)])
            tiered = await client.check(Check.for_policy("orders", {"user": key}, tier="paid"))
            return decisions, peek, refund, batch, tiered, await client.ping()

    decisions, peek, refund, batch, tiered, pong = run(scenario())
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].source == "weir" and decisions[3].retry_after_ms
    assert (peek.allowed, peek.remaining) == (True, 0), "at the limit, not over it"
    assert refund is not None and refund.remaining == 1
    assert not batch.allowed and batch.decisions[0].allowed
    assert (tiered.tier, tiered.limit) == ("paid", 5)
    assert pong


def test_headers_match_the_http_api(weir_server):
    """The binary decision carries what the HTTP headers need."""
    from weir import Client

    key = uuid.uuid4().hex
    http = Client(weir_server.url).check(inline(key))

    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, timeout=1.0) as client:
            return await client.check(Check.inline("aio-tests", {"user": key}, inline(key).limits, cost=0))

    binary = run(scenario())
    assert binary.headers()["RateLimit-Policy"] == http.headers()["RateLimit-Policy"]
    assert binary.remaining == http.remaining


def test_many_concurrent_checks_pipeline_over_a_small_pool(weir_server):
    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, pool_size=2, timeout=5.0) as client:
            keys = [uuid.uuid4().hex for _ in range(10)]
            checks = [inline(keys[i % 10], "5/m") for i in range(300)]
            return await asyncio.gather(*(client.check(c) for c in checks))

    decisions = run(scenario())
    assert sum(d.allowed for d in decisions) == 10 * 5
    assert all(d.source == "weir" for d in decisions)


def test_invalid_checks_raise(weir_server):
    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, timeout=1.0) as client:
            await client.check(Check.for_policy("nope", {"user": "u"}))

    with pytest.raises(WeirRequestError) as raised:
        run(scenario())
    assert raised.value.code == "unknown_policy"


def test_a_slow_weir_hits_the_deadline_and_the_failure_mode_answers(own_weir):
    async def scenario():
        async with AsyncClient("127.0.0.1", own_weir.bin_port, timeout=0.2, failure_mode="closed") as client:
            before = await client.check(inline(uuid.uuid4().hex))
            own_weir.pause()
            try:
                during = await client.check(inline(uuid.uuid4().hex))
            finally:
                own_weir.resume()
            # Once the back-off after the timeout (0.5 s) has passed.
            await asyncio.sleep(0.6)
            after = await client.check(inline(uuid.uuid4().hex))
            return before, during, after

    before, during, after = run(scenario())
    assert before.source == "weir"
    assert (during.allowed, during.source, during.retry_after_ms) == (False, "fail_closed", 1000)
    assert after.source == "weir", "the connection survives a slow answer"


def test_failure_modes_when_weir_is_down_and_reconnection_when_it_is_back(weir_binary, weir_config):
    from tests.conftest import WeirServer

    first = WeirServer(weir_binary, weir_config)
    port = first.bin_port
    first.stop()

    async def scenario():
        local = AsyncClient("127.0.0.1", port, timeout=0.2, failure_mode="local")
        opened = AsyncClient("127.0.0.1", port, timeout=0.2, failure_mode="open")
        await local.start()
        await opened.start()
        key = uuid.uuid4().hex
        local_decisions = [await local.check(inline(key)) for _ in range(4)]
        open_decision = await opened.check(inline(key))
        # weir comes back on the same port; the client reconnects by itself.
        restarted = WeirServer(weir_binary, weir_config, bin_port=port)
        try:
            for _ in range(100):
                decision = await opened.check(inline(uuid.uuid4().hex))
                if decision.source == "weir":
                    break
                await asyncio.sleep(0.1)
            return local_decisions, open_decision, decision
        finally:
            await local.close()
            await opened.close()
            restarted.stop()

    local_decisions, open_decision, reconnected = run(scenario())
    assert [d.allowed for d in local_decisions] == [True, True, True, False]
    assert {d.source for d in local_decisions} == {"local"}
    assert (open_decision.allowed, open_decision.source) == (True, "fail_open")
    assert reconnected.source == "weir"


def test_leases_reservations_and_problem_details_over_version_2(weir_server):
    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, timeout=1.0) as client:
            token, user = uuid.uuid4().hex, uuid.uuid4().hex
            running = Check.for_policy("running", {"token": token})
            held = await client.check(running)
            full = await client.check(running, problem=True)
            released = await client.release(held.lease or "")
            again = await client.release(held.lease or "")
            after = await client.check(running)
            reserved = await client.reserve(Check.for_policy("per_token", {"token": token}))
            settled = await client.settle(reserved.reservation or "", 2)
            with pytest.raises(WeirRequestError) as twice:
                await client.settle(reserved.reservation or "", 2)
            trial = [await client.check(Check.for_policy("trial", {"user": user})) for _ in range(2)]
            return held, full, released, again, after, settled, twice.value, trial

    held, full, released, again, after, settled, twice, trial = run(scenario())
    assert held.allowed and held.lease
    assert not full.allowed and full.problem is not None
    assert full.problem["violated-policies"] == ["running"]
    assert (released, again) == (True, False), "a lease is released once"
    assert after.allowed
    assert settled is not None and (settled.reserved, settled.charged, settled.refunded) == (1, 1, 0)
    assert settled.decision.remaining == 0
    assert twice.code == "already_settled"
    assert [d.shadow_denied for d in trial] == [(), ("strict",)]
    assert [r.mode for r in trial[0].limits] == ["enforce", "shadow"]
