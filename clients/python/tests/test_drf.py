"""The DRF throttles against a real weir."""

from __future__ import annotations

import json
import uuid

from django.core.checks import Error, Warning
from rest_framework.test import APIClient

from weir import Check, Client, Limit
from weir.contrib.drf import reset_clients
from weir.contrib.drf.checks import check_weir_setting


def get(client: APIClient, path: str, ip: str, **headers: str):
    return client.get(path, REMOTE_ADDR=ip, headers=headers)


def test_anon_limit_holds_across_two_app_processes(ip):
    first, second = APIClient(), APIClient()
    statuses = []
    for client in (first, second, first, second, first):
        # A new weir client each time, as separate processes would have.
        reset_clients()
        statuses.append(get(client, "/ping", ip).status_code)
    assert statuses == [200, 200, 200, 429, 429]


def test_allowed_responses_carry_rate_limit_headers(ip):
    response = get(APIClient(), "/ping", ip)
    assert response.status_code == 200
    assert response["RateLimit-Policy"] == '"anon";q=3;w=60'
    # The window slides in slots of 30 s: the reset is 60 to 90 s away.
    reset = int(response["X-RateLimit-Reset"])
    assert 60 <= reset <= 90
    assert response["RateLimit"] == f'"anon";r=2;t={reset}'
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("3", "2")
    assert "Retry-After" not in response


def test_a_429_carries_retry_after_and_headers(ip):
    client = APIClient()
    for _ in range(3):
        get(client, "/ping", ip)
    response = get(client, "/ping", ip)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response["X-RateLimit-Remaining"] == "0"
    assert response["RateLimit"].startswith('"anon";r=0;')


def test_the_user_throttle_keys_on_the_user(ip, user):
    client = APIClient()
    statuses = [get(client, "/ping", f"10.9.{i}.1", **{"X-User": user}).status_code for i in range(6)]
    assert statuses == [200] * 5 + [429], "five per minute, whatever the IP"
    assert get(client, "/ping", ip, **{"X-User": user + "-other"}).status_code == 200


def test_a_scoped_throttle_uses_the_views_scope(ip):
    client = APIClient()
    statuses = [client.post("/uploads", REMOTE_ADDR=ip).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_request_denied_by_one_throttle_is_not_counted_by_the_others(weir_server, user):
    client = APIClient()
    statuses = [get(client, "/two", "10.1.1.1", **{"X-User": user}).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    # The sustained throttle (3/hour) saw only the two allowed requests.
    sustained = Check.inline(
        "drf:sustained", {"user": user}, [Limit.sliding_window("3/3600s", name="sustained")], cost=0
    )
    assert Client(weir_server.url).check(sustained).remaining == 1


def test_tiers_give_different_limits(settings, ip, user):
    settings.WEIR = {**settings.WEIR, "TIER_FUNCTION": "tests.drf_project.views.plan_of"}
    client = APIClient()
    free = [client.post("/orders", REMOTE_ADDR=ip, headers={"X-User": user}).status_code for _ in range(3)]
    paid_user = {"X-User": user + "-paid", "X-Plan": "paid"}
    paid = [client.post("/orders", REMOTE_ADDR=ip, headers=paid_user).status_code for _ in range(6)]
    assert free == [200, 200, 429]
    assert paid == [200] * 5 + [429]


def test_without_a_tier_function_the_policy_default_applies(ip, user):
    headers = {"X-User": user, "X-Plan": "paid"}
    response = APIClient().post("/orders", REMOTE_ADDR=ip, headers=headers)
    assert response["X-RateLimit-Limit"] == "2"


def test_an_endpoint_rule_of_the_policy_applies_in_the_shared_spelling(ip, user):
    client = APIClient()
    first = client.post("/bulk-orders/7/", REMOTE_ADDR=ip, headers={"X-User": user})
    # The rule's cost of 2 spends the free tier's 2 a minute at once.
    assert (first.status_code, first["X-RateLimit-Remaining"]) == (200, "0")
    assert client.post("/bulk-orders/8/", REMOTE_ADDR=ip, headers={"X-User": user}).status_code == 429


def test_the_token_throttle_keys_on_the_token(ip):
    client = APIClient()
    token = {"Authorization": f"Token t-{ip}"}
    statuses = [get(client, "/reports", ip, **token).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert get(client, "/reports", ip).status_code == 200, "no token: not this throttle's business"


def test_the_endpoint_throttle_keys_on_the_route_not_the_path():
    client = APIClient()
    statuses = [get(client, f"/search/term{i}", f"10.2.0.{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_rates_are_read_per_request(settings, ip):
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], "anon": "1/min"}
    settings.REST_FRAMEWORK = rest
    client = APIClient()
    assert [get(client, "/ping", ip).status_code for _ in range(2)] == [200, 429]


def test_disabled_never_throttles(settings, ip):
    settings.WEIR = {**settings.WEIR, "ENABLED": False}
    client = APIClient()
    responses = [get(client, "/ping", ip) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "RateLimit" not in responses[-1]


def test_shadow_mode_sets_headers_but_never_blocks(settings, ip):
    settings.WEIR = {**settings.WEIR, "SHADOW": True}
    client = APIClient()
    responses = [get(client, "/ping", ip) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert responses[-1]["X-RateLimit-Remaining"] == "0"
    assert "Retry-After" not in responses[-1]


def test_header_style_setting(settings, ip):
    settings.WEIR = {**settings.WEIR, "HEADERS": "ietf"}
    response = get(APIClient(), "/ping", ip)
    assert "RateLimit" in response and "X-RateLimit-Limit" not in response


def test_x_forwarded_for_counts_only_from_trusted_proxies(settings):
    settings.WEIR = {**settings.WEIR, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    client = APIClient()

    def via_proxy(forwarded: str) -> int:
        return client.get("/ping", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded).status_code

    # Two clients behind the same proxy are limited apart...
    assert [via_proxy("203.0.113.70, 10.0.0.9") for _ in range(4)] == [200, 200, 200, 429]
    assert via_proxy("203.0.113.71") == 200
    # ...and an untrusted peer cannot pick its identity with the header.
    spoofed = [
        client.get("/ping", REMOTE_ADDR="192.0.2.99", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i in range(4)
    ]
    assert spoofed == [200, 200, 200, 429]


def test_failure_mode_open_allows_when_weir_is_stopped(settings, own_weir, ip):
    settings.WEIR = {"URL": own_weir.url, "FAILURE_MODE": "open"}
    client = APIClient()
    assert get(client, "/ping", ip).status_code == 200
    own_weir.stop()
    responses = [get(client, "/ping", ip) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "X-RateLimit-Limit" not in responses[-1]


def test_failure_mode_closed_denies_when_weir_is_stopped(settings, own_weir, ip):
    settings.WEIR = {"URL": own_weir.url, "FAILURE_MODE": "closed"}
    own_weir.stop()
    response = get(APIClient(), "/ping", ip)
    assert response.status_code == 429
    assert response["Retry-After"] == "1"


def test_failure_mode_local_enforces_the_limits_in_process(settings, own_weir, ip):
    settings.WEIR = {"URL": own_weir.url, "FAILURE_MODE": "local"}
    own_weir.stop()
    client = APIClient()
    responses = [get(client, "/ping", ip) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0]["X-RateLimit-Limit"] == "3"


def test_a_view_can_tell_weirs_decisions_from_the_fallbacks(settings, own_weir, ip):
    settings.WEIR = {"URL": own_weir.url, "FAILURE_MODE": "local"}
    client = APIClient()
    # The default throttles: anon and user (which limits anonymous requests
    # by IP too).
    assert get(client, "/sources", ip).json() == ["weir", "weir"]
    own_weir.stop()
    assert get(client, "/sources", ip).json() == ["local", "local"]


def test_system_check_reports_a_missing_or_invalid_setting(settings):
    del settings.WEIR
    assert [m.id for m in check_weir_setting(None)] == ["weir.W001"]
    settings.WEIR = {"URL": "weir:7700", "FAILURE_MODE": "maybe", "TRUSTED_PROXIES": ["nope"], "COLOUR": 1}
    found = check_weir_setting(None)
    assert all(isinstance(m, Error) and m.id == "weir.E001" for m in found)
    messages = " | ".join(m.msg for m in found)
    for expected in ("URL", "FAILURE_MODE", "'nope'", "unknown key WEIR['COLOUR']"):
        assert expected in messages
    settings.MIDDLEWARE = []
    settings.WEIR = {}
    assert [m.id for m in check_weir_setting(None)] == ["weir.W002"]
    assert isinstance(check_weir_setting(None)[0], Warning)


def running(client: APIClient, token: str, query: str = ""):
    return client.get(
        "/running" + query, REMOTE_ADDR="198.51.100.9", headers={"Authorization": f"Bearer {token}"}
    )


def test_a_requests_slot_is_released_after_its_response(weir_server):
    client, token = APIClient(), uuid.uuid4().hex
    for _ in range(3):
        # max = 1 and an hour's lease: each passes only because the one
        # before released its slot.
        response = running(client, token)
        assert response.status_code == 200
        assert response["RateLimit-Policy"] == '"running";q=1;w=3600;qu="concurrent-requests"'


def test_a_failing_view_releases_its_slot_too(weir_server):
    client, token = APIClient(raise_request_exception=False), uuid.uuid4().hex
    assert running(client, token, "?fail=1").status_code == 500
    assert running(client, token).status_code == 200


def test_a_streaming_response_holds_its_slot_until_its_body_ends(weir_server):
    client, token = APIClient(), uuid.uuid4().hex
    streaming = running(client, token, "?stream=1")
    assert streaming.status_code == 200
    assert running(client, token).status_code == 429, "still streaming"
    assert b"".join(streaming.streaming_content) == b"ab"
    streaming.close()
    assert running(client, token).status_code == 200


def test_a_streaming_response_closed_unread_releases_its_slot(weir_server):
    """As a server closes the response of a client that went away before
    the body was sent."""
    client, token = APIClient(), uuid.uuid4().hex
    streaming = running(client, token, "?stream=1")
    assert running(client, token).status_code == 429, "still held"
    streaming.close()
    assert running(client, token).status_code == 200


def test_a_client_that_accepts_problem_details_gets_weirs(ip):
    client = APIClient()
    for _ in range(3):
        assert get(client, "/ping", ip).status_code == 200
    # DRF itself renders JSON only: a client lists it too, or DRF says 406.
    denied = get(client, "/ping", ip, Accept="application/problem+json, application/json;q=0.9")
    assert denied.status_code == 429
    assert denied["Content-Type"] == "application/problem+json"
    problem = json.loads(denied.content)
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert problem["violated-policies"] == ["anon"]
    assert denied["Retry-After"]
    plain = get(client, "/ping", ip)
    assert plain.status_code == 429 and plain["Content-Type"] == "application/json"


def test_a_view_settles_what_a_reserving_throttle_reserved(weir_server):
    client, token = APIClient(), uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {token}"}
    first = client.post("/generate?used=2", REMOTE_ADDR="198.51.100.9", headers=auth)
    assert first.status_code == 200
    # One unit reserved, two used: one more charged, and only once.
    assert first.json() == {"charged": [1], "again": 0}
    assert client.post("/generate", REMOTE_ADDR="198.51.100.9", headers=auth).status_code == 429
