"""The ``WEIR`` setting: read on every request, so ``override_settings`` and
settings changed at runtime take effect at once; validated the same way by
the system check (``weir.E001`` ...) and at runtime."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from weir import ip
from weir.fallback import FAILURE_MODES
from weir.rates import parse_rate

DEFAULTS: dict[str, Any] = {
    "URL": "http://127.0.0.1:7700",
    "CA_BUNDLE": None,
    "TIMEOUT": 0.1,
    "FAILURE_MODE": "open",
    "HEADERS": "both",
    "TRUSTED_PROXIES": [],
    "ENABLED": True,
    "SHADOW": False,
    "NAMESPACE": "drf",
    "POLICY": None,
    "TOKEN_HEADER": "Authorization",
    "TIER_FUNCTION": None,
    "LOCAL_RATE": "60/minute",
    "LOCAL_SHARE": 1.0,
}

HEADER_STYLES = ("both", "ietf", "x", "none")


@dataclass(frozen=True)
class WeirSettings:
    """The ``WEIR`` dict, validated, with defaults filled in."""

    url: str
    ca_bundle: str | None
    timeout: float
    failure_mode: str
    headers: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    enabled: bool
    shadow: bool
    namespace: str
    policy: str | None
    token_header: str
    tier_function: Any
    local_rate: str
    local_share: float


def problems(raw: Any) -> list[str]:
    """Everything wrong with a ``WEIR`` value; empty when it is valid."""
    if not isinstance(raw, dict):
        return [f"WEIR must be a dict, not {type(raw).__name__}"]
    found = [f"unknown key WEIR[{key!r}]" for key in raw if key not in DEFAULTS]
    merged = {**DEFAULTS, **raw}
    url = merged["URL"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        found.append("WEIR['URL'] must be an http:// or https:// URL")
    ca_bundle = merged["CA_BUNDLE"]
    if ca_bundle is not None and not isinstance(ca_bundle, str):
        found.append("WEIR['CA_BUNDLE'] must be the path of a PEM file of CA certificates, or None")
    timeout = merged["TIMEOUT"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        found.append("WEIR['TIMEOUT'] must be a positive number of seconds")
    if merged["FAILURE_MODE"] not in FAILURE_MODES:
        found.append(f"WEIR['FAILURE_MODE'] must be one of {', '.join(FAILURE_MODES)}")
    if merged["HEADERS"] not in HEADER_STYLES:
        found.append(f"WEIR['HEADERS'] must be one of {', '.join(HEADER_STYLES)}")
    for flag in ("ENABLED", "SHADOW"):
        if not isinstance(merged[flag], bool):
            found.append(f"WEIR[{flag!r}] must be True or False")
    proxies = merged["TRUSTED_PROXIES"]
    if not isinstance(proxies, list | tuple):
        found.append("WEIR['TRUSTED_PROXIES'] must be a list of networks such as '10.0.0.0/8'")
    else:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except (TypeError, ValueError):
                found.append(f"WEIR['TRUSTED_PROXIES'] has {proxy!r}, which is not a network")
    for name in ("NAMESPACE", "TOKEN_HEADER"):
        if not isinstance(merged[name], str) or not merged[name]:
            found.append(f"WEIR[{name!r}] must be a non-empty string")
    if merged["POLICY"] is not None and not isinstance(merged["POLICY"], str):
        found.append("WEIR['POLICY'] must be a policy name or None")
    tier_function = merged["TIER_FUNCTION"]
    if tier_function is not None:
        try:
            resolved = import_string(tier_function) if isinstance(tier_function, str) else tier_function
            if not callable(resolved):
                raise TypeError
        except (ImportError, TypeError):
            found.append(f"WEIR['TIER_FUNCTION'] {tier_function!r} is not an importable callable")
    try:
        parse_rate(merged["LOCAL_RATE"])
    except (AttributeError, ValueError) as error:
        found.append(f"WEIR['LOCAL_RATE']: {error}")
    share = merged["LOCAL_SHARE"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        found.append("WEIR['LOCAL_SHARE'] must be a number in (0, 1]")
    return found


_parsed: tuple[str, WeirSettings] | None = None


def load() -> WeirSettings:
    """The current ``WEIR`` setting, parsed again only when it changes.

    Raises:
        ImproperlyConfigured: listing every problem.
    """
    global _parsed
    raw = getattr(django_settings, "WEIR", {})
    fingerprint = repr(raw)
    cached = _parsed
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    parsed = _parse(raw)
    _parsed = (fingerprint, parsed)
    return parsed


def _parse(raw: Any) -> WeirSettings:
    found = problems(raw)
    if found:
        raise ImproperlyConfigured("; ".join(found))
    merged = {**DEFAULTS, **raw}
    tier_function = merged["TIER_FUNCTION"]
    if isinstance(tier_function, str):
        tier_function = import_string(tier_function)
    return WeirSettings(
        url=merged["URL"],
        ca_bundle=merged["CA_BUNDLE"],
        timeout=float(merged["TIMEOUT"]),
        failure_mode=merged["FAILURE_MODE"],
        headers=merged["HEADERS"],
        trusted_proxies=ip.networks(merged["TRUSTED_PROXIES"]),
        enabled=merged["ENABLED"],
        shadow=merged["SHADOW"],
        namespace=merged["NAMESPACE"],
        policy=merged["POLICY"],
        token_header=merged["TOKEN_HEADER"],
        tier_function=tier_function,
        local_rate=merged["LOCAL_RATE"],
        local_share=float(merged["LOCAL_SHARE"]),
    )
