"""An example FastAPI app limited by weir over the binary protocol.

    make run                                         # weir, from the repository root
    pip install -e "clients/python[fastapi]" uvicorn
    uvicorn fastapi_app:app --app-dir clients/python/examples
    curl -si localhost:8000/products                 # RateLimit headers; 429 after the burst
    curl -si -X POST localhost:8000/orders -H 'x-user: alice'

weir's address comes from WEIR_HOST and WEIR_BIN_PORT (default 127.0.0.1:7701).
"""

import os
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI

from weir import AsyncClient, Decision, Limit
from weir.contrib.fastapi import RateLimit, RateLimited, RateLimitMiddleware, Rule, keys, rate_limited_handler


@asynccontextmanager
async def lifespan(app: FastAPI):
    host = os.environ.get("WEIR_HOST", "127.0.0.1")
    port = int(os.environ.get("WEIR_BIN_PORT", "7701"))
    # Fail open: if weir is down, serve rather than refuse.
    async with AsyncClient(host, port, timeout=0.05, failure_mode="open") as client:
        app.state.weir = client
        yield


app = FastAPI(lifespan=lifespan)
# A denial as weir's problem details, for a client that accepts them.
app.add_exception_handler(RateLimited, rate_limited_handler)

# App-wide: weir's built-in per_ip policy on everything under /.
app.add_middleware(RateLimitMiddleware, rules=[Rule(policy="per_ip", key=keys.ip(trusted_proxies=[]))])

# Per route: the built-in per_user policy, keyed by the caller's user.
per_user = RateLimit("per_user", key=keys.user(lambda request: request.headers.get("x-user")))


@app.get("/products")
async def products():
    return [{"id": 1, "name": "kettle"}]


@app.post("/orders", dependencies=[Depends(per_user)])
async def orders():
    return {"order": 42}


@app.get("/quota")
async def quota(
    decision: Annotated[
        Decision,
        Depends(RateLimit(namespace="quota", limits=[Limit.sliding_window("100/hour")], key=keys.ip())),
    ],
):
    """Receives the decision to show the caller what is left."""
    return {"remaining": decision.remaining, "source": decision.source}
