#!/usr/bin/env bash
# Build (or reuse) an aarch64 Debian bookworm userland run through qemu-user.
# Usage: setup_userland.sh ROOT   (needs root; fails loudly on any step)
set -euo pipefail
ROOT=${1:?usage: setup_userland.sh ROOT}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
die() { echo "test-arm64: set-up failed: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, binfmt_misc)"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
dpkg -s binfmt-support >/dev/null 2>&1 || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
    echo "== apt-get install ${need[*]}"
    apt-get update -qq || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || die "apt-get install ${need[*]}"
fi

# Let the kernel run aarch64 binaries through qemu.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "mount binfmt_misc"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -f "$conf" ] || die "$conf missing (qemu-user-static)"
    grep -v '^#' "$conf" | head -n1 > /proc/sys/fs/binfmt_misc/register || die "register qemu-aarch64 binfmt"
fi

if [ -f "$ROOT/.edgesdk-userland-complete" ]; then
    echo "== reusing userland $ROOT"
    exit 0
fi
rm -rf "$ROOT"
mkdir -p "$(dirname "$ROOT")"
echo "== debootstrap first stage (arm64 bookworm from $MIRROR)"
debootstrap --arch=arm64 --variant=minbase --foreign --include=python3,python3-venv \
    bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || die "debootstrap first stage (see $ROOT.debootstrap.log)"
echo "== debootstrap second stage (emulated, a few minutes)"
chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$ROOT.debootstrap.log" 2>&1 \
    || die "debootstrap second stage (see $ROOT.debootstrap.log)"
arch=$(chroot "$ROOT" python3 -c 'import platform; print(platform.machine())') || die "python3 in userland"
[ "$arch" = aarch64 ] || die "userland python reports $arch, not aarch64"
# onnxruntime's cpuinfo reads these; the host's /sys is never bound in.
mkdir -p "$ROOT/sys/devices/system/cpu"
echo 0-1 > "$ROOT/sys/devices/system/cpu/possible"
echo 0-1 > "$ROOT/sys/devices/system/cpu/present"
touch "$ROOT/.edgesdk-userland-complete"
echo "== userland ready: $ROOT ($arch)"
