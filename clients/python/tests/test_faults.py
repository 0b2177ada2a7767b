"""The async client with weir hung (SIGSTOP) and weir restarted: after the
first timeout, calls answer by the failure mode at once until the back-off
ends; after an outage, decisions go through weir again within about a
second."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from weir import AsyncClient, Check, aio

from .conftest import WeirServer


def order(user: str) -> Check:
    return Check.for_policy("orders", {"user": user}, cost=0)


def test_a_hung_weir_costs_one_timeout_then_answers_by_the_failure_mode_at_once(
    own_weir: WeirServer, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counts the requests that reach a connection, that is, that ask weir.
    asked = []
    send = aio._Connection.request

    async def counted(self, op: int, body: bytes):
        asked.append(op)
        return await send(self, op, body)

    monkeypatch.setattr(aio._Connection, "request", counted)

    async def scenario() -> None:
        async with AsyncClient("127.0.0.1", own_weir.bin_port, timeout=0.3, failure_mode="open") as client:
            assert (await client.check(order(user))).source == "weir"
            own_weir.pause()
            try:
                before = len(asked)
                first = await client.check(order(user))
                assert first.source == "fail_open"
                assert len(asked) == before + 1, "the first call asked weir and timed out"
                for _ in range(50):
                    assert (await client.check(order(user))).source == "fail_open"
                # None of them asked weir, so none waited for its timeout.
                assert len(asked) == before + 1
            finally:
                own_weir.resume()
            # The back-off (0.5 s after the first failure) ends; weir answers.
            await asyncio.sleep(0.6)
            assert (await client.check(order(user))).source == "weir"

    asyncio.run(scenario())


def test_decisions_go_through_weir_again_soon_after_an_outage(
    weir_binary: Path, weir_config: Path, user: str
) -> None:
    first = WeirServer(weir_binary, weir_config)
    port = first.bin_port

    async def scenario() -> float:
        async with AsyncClient("127.0.0.1", port, timeout=0.3, failure_mode="open") as client:
            assert (await client.check(order(user))).source == "weir"
            first.stop()
            # Down for a while: the reconnect back-off grows to its cap.
            for _ in range(30):
                assert (await client.check(order(user))).source == "fail_open"
                await asyncio.sleep(0.1)
            second = WeirServer(weir_binary, weir_config, bin_port=port)
            try:
                back = time.monotonic()
                while (await client.check(order(user))).source != "weir":
                    assert time.monotonic() - back < 5, "weir is used again"
                    await asyncio.sleep(0.05)
                return time.monotonic() - back
            finally:
                second.stop()

    took = asyncio.run(scenario())
    # Reported, not asserted: about a second (the reconnect back-off's cap).
    print(f"decisions through weir again {took:.2f} s after it came back")
