"""Checks per second from one asyncio process through weir.AsyncClient,
pipelined over a small pool: the Python client's own cost per check.

    make run     # weir with its built-in config, in another terminal
    clients/python/.venv/bin/python clients/python/bench/aio_throughput.py --seconds 5
"""

import argparse
import asyncio
import time

from weir import AsyncClient, Check


async def main(host: str, port: int, concurrency: int, seconds: float, pool: int) -> None:
    async with AsyncClient(host, port, pool_size=pool, timeout=2.0) as client:
        done = 0
        sources: dict[str, int] = {}
        stop = time.monotonic() + seconds

        async def worker(n: int) -> None:
            nonlocal done
            check = Check.for_policy("per_user", {"user": f"bench-{n}"}, tier="paid")
            while time.monotonic() < stop:
                decision = await client.check(check)
                sources[decision.source] = sources.get(decision.source, 0) + 1
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
    print(
        f"{done / elapsed:,.0f} checks/s from one asyncio process "
        f"({concurrency} concurrent callers, {pool} connections, {1e6 * elapsed / done:.1f} us per check); "
        f"answered by: {sources}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7701)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.host, arguments.port, arguments.concurrency, arguments.seconds, arguments.pool)
    )
