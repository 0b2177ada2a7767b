#!/usr/bin/env bash
# Lays out the image's root filesystem in target/image/rootfs from a release
# build of weir, then builds the image weir:<version> with buildah (FROM
# scratch, vfs storage: no registry, no daemon). Why scratch: this machine
# can pull no base image, and weir needs only the C library it links
# against, CA certificates and a user; ldd says which libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
BIN=${WEIR_RELEASE_BIN:-target/release/weir}
CONTEXT=target/image
ROOT=$CONTEXT/rootfs

rm -rf "$ROOT"
mkdir -p "$ROOT/usr/bin" "$ROOT/etc/ssl/certs" "$ROOT/tmp" "$ROOT/var/lib/weir"
strip -o "$ROOT/usr/bin/weir" "$BIN"
# The shared libraries it links against, at the paths the loader expects.
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/usr/sbin/nologin\nweir:x:65532:65532:weir:/var/lib/weir:/usr/sbin/nologin\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nweir:x:65532:\n' >"$ROOT/etc/group"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$ROOT/etc/hosts"
chmod 1777 "$ROOT/tmp"
chown 65532:65532 "$ROOT/var/lib/weir"
cp Containerfile "$CONTEXT/Containerfile"

buildah --storage-driver vfs bud --quiet --layers=false -f "$CONTEXT/Containerfile" -t "weir:$VERSION" "$CONTEXT" >/dev/null
size=$(buildah --storage-driver vfs images --format '{{.Size}}' "weir:$VERSION")
echo "built weir:$VERSION ($size; root filesystem $(du -sh "$ROOT" | cut -f1))"
