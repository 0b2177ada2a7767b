#!/usr/bin/env bash
# CPU per request of `POST /v1/check` against `GET /healthz`, same wrk load,
# same weir: the cost of a decision over HTTP beyond HTTP itself. Reads the
# weir process's CPU time (utime + stime, /proc/PID/stat) around each run.
# Installs wrk from Debian's packages if it is missing.
#
#   benches/http-cpu.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=${2:-32}
command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
cargo build --release --bin weir --quiet

work=$(mktemp -d)
trap 'kill $WEIR 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/weir.toml" <<'TOML'
[policies.api]
key = ["user"]
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1000000000/s", burst = 1000000000 },
  { name = "daily", algorithm = "sliding_window", rate = "4000000000/day" },
]
TOML
# 10,000 users in turn, every check allowed: the common path.
cat >"$work/check.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local n = 0
request = function()
  n = (n + 1) % 10000
  return wrk.format(nil, "/v1/check", nil, '{"policy":"api","key":{"user":"user-' .. n .. '"}}')
end
LUA
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/weir serve --config "$work/weir.toml" --http-addr "127.0.0.1:$port" \
  --bin-addr "127.0.0.1:$bin_port" --log error >/dev/null 2>&1 &
WEIR=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$WEIR/stat"; }
hz=$(getconf CLK_TCK)
# run NAME ARGS...: prints requests/s and weir CPU microseconds per request.
run() {
  local name=$1
  shift
  local before after requests
  before=$(ticks)
  requests=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$@" | awk '/requests in/ {print $1}')
  after=$(ticks)
  python3 - "$name" "$requests" "$before" "$after" "$hz" "$SECONDS_PER_RUN" "$work/cpu" <<'PY'
import sys
name, requests, before, after, hz, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cpu_file = sys.argv[7]
cpu_us = (after - before) / hz * 1e6 / requests
print(f"{name:>16}: {requests / seconds:,.0f} requests/s, weir CPU {cpu_us:.2f} us per request")
with open(cpu_file, "a") as out:
    out.write(f"{cpu_us}\n")
PY
}
run "GET /healthz" "http://127.0.0.1:$port/healthz"
run "POST /v1/check" -s "$work/check.lua" "http://127.0.0.1:$port"
python3 -c 'import sys; a, b = [float(x) for x in open(sys.argv[1])]; print(f"check / healthz CPU per request: {b / a:.2f}x")' "$work/cpu"
