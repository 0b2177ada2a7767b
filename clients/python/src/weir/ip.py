"""The client's address behind proxies, for any framework.

``remote`` is the peer that connected. Only when that peer is a trusted
proxy is ``X-Forwarded-For`` read, from the right: each hop a trusted proxy
added is skipped, and the first address not in a trusted network is the
client. A client cannot choose its identity by sending the header itself,
because its entries sit left of the first untrusted hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """Parses ``"10.0.0.0/8"``-style strings.

    Raises:
        ValueError: for a string that is not a network.
    """
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def _address(text: str) -> Address | None:
    """An address as proxies write them: ``203.0.113.7``, ``2001:db8::1``,
    with a port (``203.0.113.7:5123``) or in brackets (``[2001:db8::1]``,
    ``[2001:db8::1]:443``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(remote: str, forwarded_for: str | Sequence[str] | None, trusted: Sequence[Network]) -> str:
    """The client's address, trusting ``forwarded_for`` only from proxies.

    ``forwarded_for`` is the header's value, or its lines when it came
    several times (a proxy may add a line of its own rather than append):
    they are read as one list, the last line's entries last."""
    if forwarded_for is not None and not isinstance(forwarded_for, str):
        forwarded_for = ",".join(forwarded_for)
    peer = _address(remote)
    if peer is None:
        return remote or "unknown"

    def is_trusted(address: Address) -> bool:
        return any(address in network for network in trusted)

    if not is_trusted(peer):
        return str(peer)
    for hop in reversed((forwarded_for or "").split(",")):
        address = _address(hop)
        if address is None:
            break
        if not is_trusted(address):
            return str(address)
        peer = address
    # Every hop was a trusted proxy (or the header was unusable): the
    # innermost one we could verify.
    return str(peer)


def bearer_token(value: str | None) -> str | None:
    """A header's token, without a leading scheme word (``Token``,
    ``Bearer``)."""
    parts = (value or "").split()
    return parts[-1] if parts else None
