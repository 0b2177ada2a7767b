"""The Python clients against a weir serving TLS (``--tls-cert``), with a
test CA: HTTPS with a CA bundle, the binary protocol with an ``ssl``
context, a clear error for a plaintext client, and a certificate reloaded
on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
import urllib3

from weir import AsyncClient, Check, Client, WeirRequestError
from weir.contrib.drf.settings import load
from weir.contrib.drf.throttles import client_for

from .conftest import WeirServer


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pki:
    """A test CA, its certificate for 127.0.0.1, and the files weir reads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert = directory / "weir.pem"
        self.key = directory / "weir.key"
        self.issue()

    def issue(self) -> None:
        """A new CA and certificate, written over the previous files."""
        self.ca = trustme.CA()
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        leaf.private_key_pem.write_to_path(str(self.key))
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        for extra in leaf.cert_chain_pems[1:]:
            with open(self.cert, "ab") as out:
                out.write(extra.bytes())
        self.bundle = self.directory / f"ca-{time.monotonic_ns()}.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def tls_weir(weir_binary: Path, weir_config: Path, pki: Pki):
    flags = ("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    server = WeirServer(weir_binary, weir_config, extra=flags, ca_bundle=str(pki.bundle))
    yield server
    server.stop()


def test_the_sync_client_checks_over_https_with_a_ca_bundle(
    tls_weir: WeirServer, pki: Pki, user: str
) -> None:
    client = Client(tls_weir.url, timeout=2.0, ca_bundle=str(pki.bundle))
    assert client.check_policy("orders", {"user": user}).allowed
    assert client.check_policy("orders", {"user": user}).allowed
    assert not client.check_policy("orders", {"user": user}).allowed


def test_a_certificate_from_another_ca_is_not_trusted(
    tls_weir: WeirServer, tmp_path: Path, user: str
) -> None:
    (tmp_path / "stranger").mkdir()
    stranger = Pki(tmp_path / "stranger")
    client = Client(tls_weir.url, timeout=2.0, ca_bundle=str(stranger.bundle), failure_mode="closed")
    assert not client.check_policy("orders", {"user": user}).allowed


def test_a_plaintext_client_on_the_tls_port_gets_a_clear_error(tls_weir: WeirServer, user: str) -> None:
    plain = tls_weir.url.replace("https://", "http://")
    # An answer, not a hang: a hung port would end in the client's timeout
    # and the failure mode's decision, not in weir's error.
    with pytest.raises(WeirRequestError) as raised:
        Client(plain, timeout=2.0).check_policy("orders", {"user": user})
    assert raised.value.code == "tls_required"
    assert "https://" in str(raised.value)


def test_the_drf_client_takes_a_ca_bundle(settings, tls_weir: WeirServer, pki: Pki, user: str) -> None:
    settings.WEIR = {"URL": tls_weir.url, "CA_BUNDLE": str(pki.bundle), "TIMEOUT": 2.0}
    assert client_for(load()).check_policy("orders", {"user": user}).allowed


def test_the_async_client_speaks_the_binary_protocol_over_tls(
    tls_weir: WeirServer, pki: Pki, user: str
) -> None:
    async def scenario() -> None:
        async with AsyncClient("127.0.0.1", tls_weir.bin_port, timeout=2.0, ssl=pki.context()) as client:
            assert (await client.check(Check.for_policy("orders", {"user": user}))).allowed

    asyncio.run(scenario())


def test_a_plaintext_async_client_on_the_tls_port_is_told_so(
    tls_weir: WeirServer, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> bool:
        client = AsyncClient("127.0.0.1", tls_weir.bin_port, timeout=1.0, failure_mode="closed")
        async with client:
            return (await client.check(Check.for_policy("orders", {"user": user}))).allowed

    with caplog.at_level(logging.WARNING, logger="weir"):
        assert not asyncio.run(scenario())
    # weir's own refusal reached the client: it was told, not left waiting.
    assert "tls_required" in caplog.text


def test_sighup_reloads_the_certificate(tls_weir: WeirServer, pki: Pki, user: str) -> None:
    old_bundle = str(pki.bundle)
    pki.issue()
    tls_weir.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        fresh = Client(tls_weir.url, timeout=2.0, ca_bundle=str(pki.bundle), failure_mode="closed")
        if fresh.check_policy("orders", {"user": user}).allowed:
            break
        assert time.monotonic() < deadline, "weir serves the new certificate"
        time.sleep(0.1)
    stale = Client(tls_weir.url, timeout=2.0, ca_bundle=old_bundle, failure_mode="closed")
    assert not stale.check_policy("orders", {"user": f"{user}-other"}).allowed


def tls_cluster(
    weir_binary: Path, weir_config: Path, pki: Pki, extra: tuple[str, ...] = ()
) -> list[WeirServer]:
    """Two TLS nodes with ``extra`` flags; the caller stops them."""
    gossip = [free_udp_port(), free_udp_port()]
    common = (
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
        "--cluster-secret",
        "python-tls-secret-0123456789",
        *extra,
    )
    servers: list[WeirServer] = []
    try:
        for i in range(2):
            node = (
                "--node-id",
                f"tls-{i}",
                "--gossip-addr",
                f"127.0.0.1:{gossip[i]}",
                "--sync-addr",
                f"127.0.0.1:{free_udp_port()}",
            )
            seed = ("--seed", f"127.0.0.1:{gossip[0]}") if i else ()
            servers.append(
                WeirServer(weir_binary, weir_config, extra=common + node + seed, ca_bundle=str(pki.bundle))
            )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def usage_of_both(servers: list[WeirServer], pki: Pki, until: Callable[[dict], bool]) -> dict:
    """The usage report of the first node, once ``until`` holds for it."""
    http = urllib3.PoolManager(ca_certs=str(pki.bundle), timeout=2.0, retries=False)
    deadline = time.monotonic() + 20
    while True:
        report = http.request("GET", servers[0].url + "/v1/usage?range=5m").json()
        if until(report):
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.2)


@pytest.mark.parametrize("peer_ca", [False, True], ids=["unchecked", "peer-ca"])
def test_a_tls_cluster_still_merges_its_peers_usage(
    weir_binary: Path, weir_config: Path, pki: Pki, peer_ca: bool
) -> None:
    """Peers ask each other's HTTP API (the usage API merges their answers):
    with TLS on, they speak TLS to each other, and with --peer-ca each
    checks that the other's certificate is the cluster CA's."""
    extra = ("--peer-ca", str(pki.bundle)) if peer_ca else ()
    servers = tls_cluster(weir_binary, weir_config, pki, extra)
    try:
        usage_of_both(servers, pki, lambda r: sorted(r["nodes"]) == ["tls-0", "tls-1"] and not r["missing"])
    finally:
        for server in servers:
            server.stop()


def test_a_peer_whose_certificate_another_ca_signed_is_not_asked(
    weir_binary: Path, weir_config: Path, pki: Pki, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    servers = tls_cluster(weir_binary, weir_config, pki, ("--peer-ca", str(other)))
    try:
        # Once the second node has joined, asking it fails on its certificate.
        report = usage_of_both(servers, pki, lambda r: "TLS" in str(r["missing"]))
        assert report["nodes"] == ["tls-0"]
        error = report["missing"][0]["error"]
        assert "--peer-ca" in error and "UnknownIssuer" in error, error
    finally:
        for server in servers:
            server.stop()
