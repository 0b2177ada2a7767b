#!/usr/bin/env bash
# weir's binary protocol against a Redis token-bucket Lua script (EVALSHA),
# same load, same run. Installs redis-server from Debian's packages if it is
# missing. Extra arguments go to the load generator, e.g.
#   benches/compare-redis.sh --connections 8 --depth 16 --seconds 5 --keys 10000
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server >/dev/null
fi
cargo bench --bench loadgen -- "$@"
