"""The FastAPI dependency and middleware, against a real weir."""

import asyncio
import os
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from tests.conftest import WeirServer
from weir import AsyncClient, Check, Decision, Limit
from weir.contrib.fastapi import (
    RateLimit,
    RateLimited,
    RateLimitMiddleware,
    Rule,
    keys,
    rate_limited_handler,
    settle,
)


def make_app(port: int, failure_mode: str = "open") -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncClient("127.0.0.1", port, timeout=1.0, failure_mode=failure_mode) as client:
            app.state.weir = client
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_exception_handler(RateLimited, rate_limited_handler)
    namespace = f"mw-{uuid.uuid4().hex[:8]}"
    app.add_middleware(
        RateLimitMiddleware,
        rules=[
            Rule(
                namespace=namespace,
                limits=[Limit.sliding_window("3/m", name="mw")],
                key=keys.ip(trusted_proxies=["10.0.0.0/8"]),
                path_prefix="/mw/",
            ),
            Rule(policy="running", key=keys.token(), path_prefix="/mw-running"),
        ],
    )
    orders = RateLimit(
        "orders",
        key=keys.user(lambda r: r.headers.get("x-user")),
        tier=lambda r: r.headers.get("x-plan"),
    )
    quota = RateLimit(namespace="quota", limits=[Limit.token_bucket("1/m", burst=2)], key=keys.ip())

    @app.post("/orders", dependencies=[Depends(orders)])
    async def post_order():
        return {"ok": True}

    @app.post("/bulk-orders/{batch:int}", dependencies=[Depends(orders)])
    async def post_bulk(batch: int):
        return {"batch": batch}

    @app.get("/mine")
    async def mine(decision: Annotated[Decision, Depends(RateLimit("orders", key=keys.user()))]):
        return {"source": decision.source}

    @app.get("/quota")
    async def get_quota(decision: Annotated[Decision, Depends(quota)]):
        return {"remaining": decision.remaining, "source": decision.source}

    @app.get("/mw/items")
    async def items():
        return {"items": []}

    @app.get("/mw-running")
    async def mw_running():
        return {"ok": True}

    @app.get("/running", dependencies=[Depends(RateLimit("running", key=keys.token()))])
    async def running(request: Request, fail: bool = False, stream: bool = False, hang: bool = False):
        if fail:
            raise RuntimeError("the view failed")
        if hang:
            await asyncio.Event().wait()
        if not stream:
            return {"ok": True}
        token = keys.token()(request)
        check = Check.for_policy("running", token or {})

        async def body():
            yield b"held:"
            # Mid-stream, the request's slot is still taken.
            yield str((await request.app.state.weir.peek(check)).remaining).encode()

        return StreamingResponse(body())

    @app.post("/generate", dependencies=[Depends(RateLimit("per_token", key=keys.token(), reserve=True))])
    async def generate(request: Request, used: int = 1):
        settled = await settle(request, used)
        again = await settle(request, used)
        return {"charged": [s.charged for s in settled], "again": len(again)}

    @app.get("/trial")
    async def trial(
        request: Request,
        decision: Annotated[
            Decision, Depends(RateLimit("trial", key=keys.user(lambda r: r.headers.get("x-user"))))
        ],
    ):
        seen = request.state.weir_decisions
        return {"shadow_denied": list(decision.shadow_denied), "seen": len(seen)}

    @app.get("/free")
    async def free():
        return {"free": True}

    # Not /search/{term}: the DRF tests' view spells the same endpoint.
    @app.get("/find/{term}", dependencies=[Depends(RateLimit("per_endpoint", key=keys.endpoint()))])
    async def search(term: str):
        return {"term": term}

    return app


@pytest.fixture
def client(weir_server, ip):
    with TestClient(make_app(weir_server.bin_port), client=(ip, 50000)) as test_client:
        yield test_client


def test_a_dependency_allows_then_answers_429_with_headers(client):
    user = {"x-user": uuid.uuid4().hex}
    first = client.post("/orders", headers=user)
    assert first.status_code == 200
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("2", "1")
    assert first.headers["ratelimit-policy"] == '"orders";q=2;w=60'
    client.post("/orders", headers=user)
    denied = client.post("/orders", headers=user)
    assert denied.status_code == 429
    assert int(denied.headers["retry-after"]) >= 1
    assert denied.headers["ratelimit"].startswith('"orders";r=0;')


def test_the_tier_comes_from_the_tier_function(client):
    paid = {"x-user": uuid.uuid4().hex, "x-plan": "paid"}
    statuses = [client.post("/orders", headers=paid).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_requests_without_a_key_are_not_limited_by_it(client):
    assert [client.post("/orders").status_code for _ in range(5)] == [200] * 5


def test_a_route_can_receive_the_decision(client):
    assert client.get("/quota").json() == {"remaining": 1, "source": "weir"}


def test_the_middleware_limits_matching_paths_atomically(client):
    responses = [client.get("/mw/items") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["ratelimit-policy"] == '"mw";q=3;w=60'
    assert responses[3].json() == {"detail": "rate limit exceeded"}
    assert "retry-after" in responses[3].headers
    assert client.get("/free").status_code == 200
    assert "ratelimit" not in client.get("/free").headers


def test_the_ip_key_reads_every_forwarded_for_line(weir_server):
    with TestClient(make_app(weir_server.bin_port), client=("10.0.0.5", 50000)) as proxied:
        real = f"203.0.113.{uuid.uuid4().int % 200 + 1}"
        # The client writes a line of its own; the proxy adds the real one.
        for spoofed in ("6.6.6.1", "6.6.6.2", "6.6.6.3", "6.6.6.4"):
            headers = [("x-forwarded-for", spoofed), ("x-forwarded-for", f"{real}:5555")]
            last = proxied.get("/mw/items", headers=headers)
        assert last.status_code == 429, "one key, the real client's, whatever it wrote"


def test_the_ip_key_trusts_forwarded_for_only_from_proxies(weir_server):
    app = make_app(weir_server.bin_port)
    with TestClient(app, client=("10.0.0.5", 50000)) as proxied:
        client_a = {"x-forwarded-for": f"203.0.113.{uuid.uuid4().int % 200 + 1}"}
        statuses = [proxied.get("/mw/items", headers=client_a).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        client_b = {"x-forwarded-for": "198.18.0.1, 10.0.0.7"}
        assert proxied.get("/mw/items", headers=client_b).status_code == 200


def test_an_endpoint_rule_of_the_policy_applies_in_the_shared_spelling(client):
    user = {"x-user": uuid.uuid4().hex}
    first = client.post("/bulk-orders/7", headers=user)
    assert (first.status_code, first.headers["x-ratelimit-remaining"]) == (200, "0")
    assert client.post("/bulk-orders/8", headers=user).status_code == 429


def test_a_key_function_that_finds_no_key_skips_visibly(client):
    # Nothing sets request.state.user here: the check is skipped, and says so.
    response = client.get("/mine")
    assert (response.status_code, response.json()["source"]) == (200, "skipped")


def test_the_endpoint_key_uses_the_route_template(client):
    statuses = [client.get(f"/find/{uuid.uuid4().hex}").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_failure_mode_open_serves_and_closed_refuses_when_weir_is_down(weir_binary, weir_config, ip):
    down = WeirServer(weir_binary, weir_config)
    port = down.bin_port
    down.stop()
    with TestClient(make_app(port, "open"), client=(ip, 50000)) as opened:
        response = opened.get("/quota")
        assert (response.status_code, response.json()["source"]) == (200, "fail_open")
        assert "x-ratelimit-limit" not in response.headers
    with TestClient(make_app(port, "closed"), client=(ip, 50000)) as closed:
        response = closed.get("/quota")
        assert (response.status_code, response.headers["retry-after"]) == (429, "1")


def test_the_example_app_runs_against_weir_with_its_built_in_config(weir_binary, tmp_path, monkeypatch):
    config = tmp_path / "weir.toml"
    config.write_text(
        subprocess.run([str(weir_binary), "default-config"], capture_output=True, text=True).stdout
    )
    weir = WeirServer(weir_binary, config)
    monkeypatch.setenv("WEIR_BIN_PORT", str(weir.bin_port))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import fastapi_app

        with TestClient(fastapi_app.app, client=("192.0.2.10", 50000)) as example:
            products = example.get("/products")
            assert products.status_code == 200
            assert products.headers["x-ratelimit-limit"] == "20"
            order = example.post("/orders", headers={"x-user": "alice"})
            assert (order.status_code, order.headers["x-ratelimit-limit"]) == (200, "10")
            assert example.get("/quota").json() == {"remaining": 99, "source": "weir"}
    finally:
        weir.stop()
        sys.modules.pop("fastapi_app", None)
        os.environ.pop("WEIR_BIN_PORT", None)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_dependency_releases_its_slot_after_the_response_and_after_an_exception(weir_server, ip):
    app = make_app(weir_server.bin_port)
    with TestClient(app, client=(ip, 50000), raise_server_exceptions=False) as client:
        token = uuid.uuid4().hex
        # max = 1 with an hour's lease: each passes only because the one
        # before released its slot.
        for _ in range(3):
            response = client.get("/running", headers=bearer(token))
            assert response.status_code == 200
            assert response.headers["ratelimit-policy"] == '"running";q=1;w=3600;qu="concurrent-requests"'
        assert client.get("/running?fail=1", headers=bearer(token)).status_code == 500
        assert client.get("/running", headers=bearer(token)).status_code == 200


def test_a_streaming_response_holds_its_slot_until_its_body_ends(weir_server, ip):
    with TestClient(make_app(weir_server.bin_port), client=(ip, 50000)) as client:
        token = uuid.uuid4().hex
        streamed = client.get("/running?stream=1", headers=bearer(token))
        assert streamed.text == "held:0"
        assert client.get("/running", headers=bearer(token)).status_code == 200


def test_a_cancelled_request_releases_its_slot(weir_server):
    """As a server cancels a request whose client went away: the app is
    cancelled while the view waits."""
    app = make_app(weir_server.bin_port)
    token = uuid.uuid4().hex
    check = Check.for_policy("running", {"token": token})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/running",
        "raw_path": b"/running",
        "query_string": b"hang=1",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    async def scenario():
        async with AsyncClient("127.0.0.1", weir_server.bin_port, timeout=1.0) as weir:
            app.state.weir = weir
            # A task group's cancellation, as Starlette cancels a request
            # whose client disconnected: every await inside is cancelled.
            async with anyio.create_task_group() as requests:
                requests.start_soon(app, scope, receive, send)
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    if (await weir.peek(check)).remaining == 0:
                        break
                held = (await weir.peek(check)).remaining
                requests.cancel_scope.cancel()
            return held, (await weir.peek(check)).remaining

    held, after = asyncio.run(scenario())
    assert (held, after) == (0, 1)


def test_the_middleware_releases_its_slots_after_the_response(client):
    token = uuid.uuid4().hex
    assert [client.get("/mw-running", headers=bearer(token)).status_code for _ in range(3)] == [200] * 3


def test_a_client_that_accepts_problem_details_gets_weirs(client):
    user = {"x-user": uuid.uuid4().hex}
    accept = {"accept": "application/problem+json"}
    for _ in range(2):
        assert client.post("/orders", headers={**user, **accept}).status_code == 200
    denied = client.post("/orders", headers={**user, **accept})
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    problem = denied.json()
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert problem["violated-policies"] == ["orders"]
    assert problem["decision"]["allowed"] is False
    assert denied.headers["retry-after"]
    plain = client.post("/orders", headers=user)
    assert plain.status_code == 429 and plain.json() == {"detail": "rate limit exceeded"}

    for _ in range(3):
        client.get("/mw/items")
    from_middleware = client.get("/mw/items", headers=accept)
    assert from_middleware.headers["content-type"] == "application/problem+json"
    assert from_middleware.json()["violated-policies"] == ["mw"]


def test_shadow_results_reach_the_route(client):
    user = {"x-user": uuid.uuid4().hex}
    first = client.get("/trial", headers=user).json()
    second = client.get("/trial", headers=user).json()
    assert first == {"shadow_denied": [], "seen": 1}
    assert second == {"shadow_denied": ["strict"], "seen": 1}, "served: a shadow limit never denies"


def test_a_route_settles_what_its_dependency_reserved(client):
    token = uuid.uuid4().hex
    first = client.post("/generate?used=2", headers=bearer(token))
    assert first.status_code == 200
    # One unit reserved, two used: one more charged, and only once.
    assert first.json() == {"charged": [1], "again": 0}
    assert client.post("/generate", headers=bearer(token)).status_code == 429
