#!/bin/sh
# Build deploy/Containerfile with Debian's buildah from a debootstrap base, then run `mkd --version`
# inside the image. Used by `make image` (minutes: debootstrap, apt, pip, compiling pylibfdt).
#   deploy/build-image.sh [IMAGE]        default IMAGE: localhost/mkd:<version from pyproject.toml>
# BASE=<image> skips debootstrap and builds on that image instead (e.g. docker.io/library/debian:bookworm-slim).
set -eu
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image=${1:-localhost/mkd:$version}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
work=var/image
mkdir -p "$work"

if [ -z "${BASE:-}" ]; then
    BASE=localhost/mkd-base:$suite
    if ! podman image exists "$BASE"; then
        # A minbase Debian as the slim image is (its docs, man pages and locales left out too).
        rm -rf "$work/rootfs"
        debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror"
        rm -rf "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/locale/"* \
               "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
        tar -C "$work/rootfs" -c . | podman import - "$BASE"
        rm -rf "$work/rootfs"
    fi
fi

# chroot isolation: builds where the OCI runtime cannot start containers (no cgroup delegation).
set -- --isolation chroot --layers --build-arg "BASE=$BASE" -f deploy/Containerfile -t "$image"
if [ -n "${PIP_CERT:-}" ]; then
    set -- "$@" --secret "id=pip-ca,src=$PIP_CERT"  # the CA pip trusts here, for pip inside the build
fi
buildah bud "$@" .

container=$(buildah from "$image")
trap 'buildah rm "$container" >/dev/null' EXIT
inside=$(buildah run --isolation chroot --user 10001:10001 "$container" -- /opt/mkd/bin/mkd --version)
echo "inside $image: $inside"
[ "$inside" = "mkd $version" ] || { echo "expected 'mkd $version'" >&2; exit 1; }
buildah run --isolation chroot "$container" -- sh -c 'command -v dtc && test "$(id -u mkd):$(id -g mkd)" = 10001:10001 && test -f /etc/mkd/mkd.toml'
# The simulated backend serves as uid 10001 inside the image, and the probe the DaemonSet uses answers.
buildah run --isolation chroot --user 10001:10001 "$container" -- sh -c '
    mkd serve --config /etc/mkd/mkd.toml --listen 127.0.0.1:0 >/tmp/serve.log 2>&1 & pid=$!
    tries=0
    until mkd --socket /run/mkd/mkd.sock probe readyz; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then cat /tmp/serve.log; kill "$pid"; exit 1; fi
        sleep 1
    done
    mkd --socket /run/mkd/mkd.sock host
    kill "$pid"; wait "$pid" || true'
echo "$image: built, mkd --version and a served probe checked"
