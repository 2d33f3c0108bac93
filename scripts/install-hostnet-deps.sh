#!/bin/sh
# Install what hostnet needs from Debian packages: QEMU, OVS-DPDK, iperf3,
# busybox, and one explicitly versioned guest kernel .deb kept in a cache dir.
# Idempotent. Without root or apt it only reports what is missing and exits 0,
# so the hostnet tests skip with a reason instead of failing.
set -eu

KERNEL_PACKAGE="${HOSTNET_KERNEL_PACKAGE:-linux-image-6.1.0-50-amd64}"
CACHE_DIR="${HOSTNET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hostnet}"
# librte-mempool-ring23 is only a Recommends of dpdk, but OVS-DPDK cannot create a
# mempool without it (EINVAL) and we install without recommends.
PACKAGES="qemu-system-x86 openvswitch-switch-dpdk dpdk librte-mempool-ring23 iperf3 busybox-static ethtool cpio iproute2 iptables kmod"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
kernel_deb=$(ls "$CACHE_DIR"/debs/"$KERNEL_PACKAGE"_*.deb 2>/dev/null | head -n 1 || true)

if [ -z "$missing" ] && [ -n "$kernel_deb" ]; then
    echo "hostnet deps: all present (kernel: $kernel_deb)"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "hostnet deps: cannot install (need root and apt-get)."
    [ -n "$missing" ] && echo "  missing Debian packages:$missing"
    [ -z "$kernel_deb" ] && echo "  missing kernel: $KERNEL_PACKAGE in $CACHE_DIR/debs (apt-get download $KERNEL_PACKAGE)"
    echo "  hostnet integration tests will skip."
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
if [ -n "$missing" ]; then
    # --no-install-recommends keeps OVS from pulling in a service we never start.
    apt-get install -y --no-install-recommends $missing
fi
if [ -z "$kernel_deb" ]; then
    mkdir -p "$CACHE_DIR/debs"
    (cd "$CACHE_DIR/debs" && apt-get download "$KERNEL_PACKAGE")
fi
echo "hostnet deps: installed; kernel .deb in $CACHE_DIR/debs"
