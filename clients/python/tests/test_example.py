"""The example project stays runnable: its checks pass and it throttles
through a real weir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import urllib3

from tests.conftest import WeirServer, free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "drf_example"


def test_the_example_shop_passes_its_checks_and_throttles(weir_binary, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr

    config = tmp_path / "weir.toml"
    config.write_text(
        subprocess.run([str(weir_binary), "default-config"], capture_output=True, text=True).stdout
    )
    weir = WeirServer(weir_binary, config)
    port = free_port()
    shop = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=EXAMPLE, env={**env, "WEIR_URL": weir.url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        http = urllib3.PoolManager(retries=False, timeout=2.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                first = http.request("GET", f"http://127.0.0.1:{port}/products")
                break
            except urllib3.exceptions.HTTPError:
                assert time.monotonic() < deadline, "the shop did not start"
                time.sleep(0.1)
        statuses = [first.status] + [
            http.request("GET", f"http://127.0.0.1:{port}/products").status for _ in range(5)
        ]
        assert statuses == [200] * 5 + [429]
        assert first.headers["X-RateLimit-Limit"] == "5"
    finally:
        shop.terminate()
        shop.wait(timeout=10)
        weir.stop()
