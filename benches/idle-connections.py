#!/usr/bin/env python3
"""Memory per idle connection, on both servers of a real weir.

Opens N connections (default 5,000) to the HTTP server, each sending one
`GET /healthz` on a kept-alive connection and reading the answer, then N to
the binary server, each sending one ping and reading the pong; then holds
them all idle and reports the growth of weir's resident set per connection.

    cargo build --release --bin weir
    python3 benches/idle-connections.py [N] [path/to/weir]
"""

import os
import resource
import socket
import struct
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def settle(pid):
    """RSS once it stops moving (tasks finish their first poll)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def connect(addr, request, reply_len):
    s = socket.create_connection(addr)
    s.sendall(request)
    got = b""
    while len(got) < reply_len:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed")
        got += chunk
    return s


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    weir = sys.argv[2] if len(sys.argv) > 2 else "target/release/weir"
    limit = 2 * count + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    http, binary = free_port(), free_port()
    proc = subprocess.Popen(
        [weir, "serve", "--http-addr", f"127.0.0.1:{http}", "--bin-addr", f"127.0.0.1:{binary}",
         "--idle-timeout", "600", "--no-usage"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                connect(("127.0.0.1", http), b"GET /readyz HTTP/1.1\r\nhost: w\r\nconnection: close\r\n\r\n", 1).close()
                break
            except OSError:
                time.sleep(0.1)
        get = b"GET /healthz HTTP/1.1\r\nhost: weir\r\n\r\n"
        ping = struct.pack("<I", 12) + b"WR\x01\x06" + struct.pack("<Q", 1)
        results = []
        held = []
        for name, port, request, reply_len in [
            ("http", http, get, 60),
            ("binary", binary, ping, 16),
        ]:
            before = settle(proc.pid)
            for _ in range(count):
                held.append(connect(("127.0.0.1", port), request, reply_len))
            after = settle(proc.pid)
            per = (after - before) * 1024 / count
            results.append((name, per))
            print(f"{name:>7}: {count} idle connections, resident set grew "
                  f"{(after - before) / 1024:.1f} MiB, {per / 1024:.1f} KB per connection")
        for s in held:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
