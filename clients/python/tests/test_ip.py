"""The client's address behind trusted proxies."""

from weir import ip

PROXIES = ip.networks(["10.0.0.0/8"])


def test_every_header_line_is_read_so_a_client_cannot_choose_its_address():
    # The client sent the first line itself; the proxy added the second.
    assert ip.client_ip("10.0.0.5", ["6.6.6.6", "203.0.113.9"], PROXIES) == "203.0.113.9"
    assert ip.client_ip("10.0.0.5", "6.6.6.6, 203.0.113.9", PROXIES) == "203.0.113.9"


def test_ports_and_brackets_are_read_as_the_address():
    assert ip.client_ip("10.0.0.5", "203.0.113.9:51234", PROXIES) == "203.0.113.9"
    assert ip.client_ip("10.0.0.5", "[2001:db8::7]:443", PROXIES) == "2001:db8::7"
    assert ip.client_ip("10.0.0.5", "[2001:db8::8]", PROXIES) == "2001:db8::8"
    assert ip.client_ip("10.0.0.5", "2001:db8::9", PROXIES) == "2001:db8::9"


def test_the_header_counts_only_from_a_trusted_proxy():
    assert ip.client_ip("198.51.100.1", "203.0.113.9", PROXIES) == "198.51.100.1"
