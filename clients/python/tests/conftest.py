"""Starts the real weir binary for the tests, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import urllib3

from weir.contrib.drf import reset_clients

REPO = Path(__file__).resolve().parents[3]

CONFIG = """
[policies.orders]
key = ["user"]
default_tier = "free"
[policies.orders.tiers.free]
requestable = true
limits = [{ name = "orders", algorithm = "sliding_window", rate = "2/m" }]
[policies.orders.tiers.paid]
requestable = true
limits = [{ name = "orders", algorithm = "sliding_window", rate = "5/m" }]
# Both adapters send the endpoint, spelled the same way: this rule applies
# to DRF's bulk-orders/<int:batch> and FastAPI's /bulk-orders/{batch}.
[[policies.orders.endpoints]]
endpoint = "POST /bulk-orders/{batch}"
cost = 2

[policies.per_token]
key = ["token"]
default_tier = "free"
[policies.per_token.tiers.free]
limits = [{ name = "token", algorithm = "token_bucket", rate = "1/m", burst = 2 }]

[policies.running]
key = ["token"]
default_tier = "free"
[policies.running.tiers.free]
limits = [{ name = "running", algorithm = "concurrency", max = 1, lease = "1h" }]

[policies.trial]
key = ["user"]
default_tier = "free"
[policies.trial.tiers.free]
limits = [
  { name = "hourly", algorithm = "sliding_window", rate = "100/h" },
  { name = "strict", algorithm = "sliding_window", rate = "1/h", mode = "shadow" },
]

[policies.per_endpoint]
key = ["endpoint"]
default_tier = "free"
[policies.per_endpoint.tiers.free]
limits = [{ name = "endpoint", algorithm = "sliding_window", rate = "3/m" }]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WeirServer:
    """A running ``weir serve``."""

    def __init__(
        self,
        binary: Path,
        config: Path,
        bin_port: int | None = None,
        *,
        extra: tuple[str, ...] = (),
        ca_bundle: str | None = None,
    ) -> None:
        """``ca_bundle``: weir serves TLS (given in ``extra``) signed by it."""
        self.port = free_port()
        self.bin_port = bin_port or free_port()
        scheme = "https" if ca_bundle else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        command = [str(binary), "serve", "--config", str(config)]
        command += ["--http-addr", f"127.0.0.1:{self.port}", "--bin-addr", f"127.0.0.1:{self.bin_port}"]
        command += list(extra)
        # A standalone node, whatever cluster settings the caller's shell has.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_CLUSTER") and k != "WEIR_SEEDS"}
        quiet = subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=quiet, stderr=quiet, env=env)
        tls = {"ca_certs": ca_bundle} if ca_bundle else {}
        http = urllib3.PoolManager(retries=False, timeout=1.0, **tls)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if http.request("GET", self.url + "/readyz").status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("weir did not become ready")

    def pause(self) -> None:
        """Stops weir (SIGSTOP) and returns once every thread of it is stopped.

        ``kill`` returns before the signal has reached every thread; a check
        sent at once could still be answered on a busy machine."""
        self.process.send_signal(signal.SIGSTOP)
        self._wait_for_threads(lambda state: state == "T", "stopped")

    def resume(self) -> None:
        """Continues weir (SIGCONT) and returns once every thread runs again."""
        self.process.send_signal(signal.SIGCONT)
        self._wait_for_threads(lambda state: state != "T", "running")

    def _wait_for_threads(self, wanted, what: str) -> None:
        deadline = time.monotonic() + 10
        while not all(wanted(state) for state in self._thread_states()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"weir's threads were not all {what} within 10 s")
            time.sleep(0.001)

    def _thread_states(self) -> list[str]:
        """Each thread's state letter from /proc (``T``: stopped by a signal)."""
        states = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except FileNotFoundError:  # the thread ended meanwhile
                continue
            # The name in parentheses may hold spaces; the state follows it.
            states.append(stat.rsplit(")", 1)[1].split()[0])
        return states

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def weir_binary() -> Path:
    """The weir binary: $WEIR_BIN, else built with cargo."""
    if os.environ.get("WEIR_BIN"):
        return Path(os.environ["WEIR_BIN"])
    subprocess.run(["cargo", "build", "--bin", "weir"], cwd=REPO, check=True)
    return REPO / "target" / "debug" / "weir"


@pytest.fixture(scope="session")
def weir_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weir") / "weir.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="session")
def weir_server(weir_binary: Path, weir_config: Path):
    server = WeirServer(weir_binary, weir_config)
    yield server
    server.stop()


@pytest.fixture
def own_weir(weir_binary: Path, weir_config: Path):
    """A weir for one test, which may stop it."""
    server = WeirServer(weir_binary, weir_config)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def weir_settings(settings, weir_server: WeirServer):
    settings.WEIR = {"URL": weir_server.url, "TIMEOUT": 1.0}
    reset_clients()
    yield settings
    reset_clients()


@pytest.fixture
def ip() -> str:
    """A client address no other test uses."""
    value = uuid.uuid4().int
    return f"198.{value % 250}.{(value >> 8) % 250}.{(value >> 16) % 250 + 1}"


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"
