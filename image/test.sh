#!/usr/bin/env bash
# Tests the built image without running a container (podman cannot run one
# on this machine): mounts the image's root filesystem, runs its weir there
# with chroot, as the image's non-root user, with the flags the Helm chart
# renders, then checks /healthz, /dashboard and a check that gets a 429.
set -euo pipefail
cd "$(dirname "$0")/.."
source helm/helm.sh
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
B="buildah --storage-driver vfs"

container=$($B from --pull-never "weir:$VERSION")
root=$($B mount "$container")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    $B umount "$container" >/dev/null
    $B rm "$container" >/dev/null
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(free_port)
binary=$(free_port)
# The chart's flags, on loopback ports of this machine.
flags=$("$HELM" template t helm/weir --show-only templates/statefulset.yaml \
    | sed -n 's/^ *- \(--[a-z-]*=.*\)$/\1/p' \
    | sed -e "s/0\.0\.0\.0:7700/127.0.0.1:$http/" -e "s/0\.0\.0\.0:7701/127.0.0.1:$binary/")
echo "image weir:$VERSION, chart flags: $(echo $flags)"
# shellcheck disable=SC2086
chroot --userspec=65532:65532 "$root" /usr/bin/weir serve $flags &
pid=$!

base="http://127.0.0.1:$http"
for _ in $(seq 1 100); do
    curl -sf "$base/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "$base/healthz" | grep -q '"ok"' || { echo "FAILED: /healthz"; exit 1; }
curl -sf "$base/dashboard" | grep -qi '<html' || { echo "FAILED: /dashboard"; exit 1; }
statuses=""
for _ in $(seq 1 25); do
    statuses+=$(curl -s -o /dev/null -w '%{http_code} ' -X POST "$base/v1/check" \
        -H 'content-type: application/json' -d '{"policy": "per_ip", "key": {"ip": "203.0.113.9"}}')
done
grep -q 429 <<<"$statuses" || { echo "FAILED: no 429 in $statuses"; exit 1; }
user=$(stat -c %U "/proc/$pid")
[ "$user" != root ] || { echo "FAILED: weir runs as root"; exit 1; }
echo "image: /healthz, /dashboard and a 429 from the image's weir, running as uid $(stat -c %u "/proc/$pid")"
