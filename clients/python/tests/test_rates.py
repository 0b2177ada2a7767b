"""The Python rate parser reads rates as weir does (the local fallback
enforces the same limits)."""

import pytest

from weir.rates import parse_rate


def test_documented_forms_parse():
    assert parse_rate("10/s") == (10, 1.0)
    assert parse_rate("100 per day") == (100, 86400.0)
    assert parse_rate("100 per 2 hours") == (100, 7200.0)


@pytest.mark.parametrize("text", ["1000 per hours", "5/minutes"])
def test_a_plural_unit_needs_a_number_as_in_weir(text):
    with pytest.raises(ValueError, match="plural without a number"):
        parse_rate(text)
