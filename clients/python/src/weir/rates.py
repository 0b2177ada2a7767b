"""Rate strings as weir reads them: ``"10/s"``, ``"100/minute"``, ``"5/10s"``,
``"100 per day"``. Used by the local fallback limiter, which has to enforce
the same limits in-process."""

import re

_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip

_PERIOD = re.compile(r"^(\d*)\s*([a-z]+)$")

# Plural unit names read right only after a number ('2 hours'), as in weir.
_PLURALS = {"milliseconds", "secs", "seconds", "mins", "minutes", "hrs", "hours", "days"}


def parse_rate(text: str) -> tuple[int, float]:
    """Returns ``(count, period_seconds)``.

    Raises:
        ValueError: naming what is wrong, as weir's own parser would.
    """
    lowered = text.strip().lower()
    if "/" in lowered:
        count_text, period_text = lowered.split("/", 1)
    elif " per " in lowered:
        count_text, period_text = lowered.split(" per ", 1)
    else:
        raise ValueError(f"invalid rate {text!r}: expected <count>/<period>, e.g. '100/minute'")
    count_text = count_text.strip()
    if not count_text.isdigit() or int(count_text) < 1:
        raise ValueError(f"invalid rate {text!r}: count must be a whole number of at least 1")
    match = _PERIOD.match(period_text.strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"invalid rate {text!r}: unknown period; use s, m, h or d, e.g. '10/s' or '5/10s'")
    if not match.group(1) and match.group(2) in _PLURALS:
        raise ValueError(
            f"invalid rate {text!r}: {match.group(2)!r} is plural without a number; "
            f"write it singular ({match.group(2).removesuffix('s')!r}) or with one ('2 {match.group(2)}')"
        )
    multiple = int(match.group(1) or "1")
    period = multiple * _UNITS[match.group(2)]
    if not 0.001 <= period <= 31 * 86400:
        raise ValueError(f"invalid rate {text!r}: the period must be between 1ms and 31 days")
    return int(count_text), period
