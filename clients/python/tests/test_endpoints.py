"""One endpoint spelling for both adapters."""

import pytest

from weir.endpoints import spell


@pytest.mark.parametrize(
    ("method", "route", "spelled"),
    [
        ("post", "orders", "POST /orders"),
        ("GET", "orders/<int:pk>/", "GET /orders/{pk}"),
        ("GET", "search/<term>", "GET /search/{term}"),
        ("GET", "^orders/(?P<pk>[^/.]+)/$", "GET /orders/{pk}"),
        ("GET", "^items/(?P<id>[0-9]{1,4})/details/$", "GET /items/{id}/details"),
        ("GET", "/orders/{order_id:int}", "GET /orders/{order_id}"),
        ("GET", "/orders/{order_id}", "GET /orders/{order_id}"),
        ("GET", "/", "GET /"),
        ("GET", "", "GET /"),
    ],
)
def test_django_and_starlette_routes_spell_the_same(method, route, spelled):
    assert spell(method, route) == spelled
