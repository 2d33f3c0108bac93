"""What this host offers: accelerator, cores, vhost-net, installed components.

Results record these facts, because TCG versus KVM or the number of host cores
changes the numbers by an order of magnitude.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OVS_VSWITCHD_DPDK = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
QEMU_BINARY = "qemu-system-x86_64"
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))


@dataclass(frozen=True)
class Accelerator:
    name: str  # "kvm" or "tcg"
    reason: str


def detect_accelerator(sys_root: Path = Path("/"), dev_kvm: Path = Path("/dev/kvm")) -> Accelerator:
    """Pick kvm where it can boot a stock kernel, else tcg, and say why.

    A PVM nested hypervisor (kvm_pvm) exposes /dev/kvm but hangs a stock kernel.
    """
    modules = Path(sys_root, "sys/module")
    if not dev_kvm.exists() or not os.access(dev_kvm, os.R_OK | os.W_OK):
        return Accelerator("tcg", f"{dev_kvm} missing or not accessible")
    if (modules / "kvm_pvm").exists():
        return Accelerator("tcg", "/dev/kvm is the PVM nested hypervisor (kvm_pvm), which hangs a stock guest kernel")
    if not ((modules / "kvm_intel").exists() or (modules / "kvm_amd").exists()):
        return Accelerator("tcg", "neither kvm_intel nor kvm_amd is loaded")
    return Accelerator("kvm", "kvm_intel or kvm_amd loaded and /dev/kvm accessible")


def resolve_accelerator(choice: str) -> Accelerator:
    """Map a user choice (auto|kvm|tcg) to an Accelerator."""
    if choice == "auto":
        return detect_accelerator()
    return Accelerator(choice, "chosen by the user")


def host_cores() -> int:
    return len(os.sched_getaffinity(0))


def vhost_net_available() -> bool:
    return Path("/dev/vhost-net").exists()


def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU_BINARY, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def busybox_path() -> Path | None:
    return next((p for p in BUSYBOX_PATHS if p.exists()), None)


def missing_components(backend: str | None = None) -> list[str]:
    """Names of what the lab needs and this host lacks ([] when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (namespaces, taps and hugepages need it)")
    for tool in (QEMU_BINARY, "iperf3", "ip", "iptables", "cpio", "dpkg-deb", "ethtool"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if busybox_path() is None:
        missing.append("busybox-static")
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun")
    if backend in (None, "vhost-user"):
        if not OVS_VSWITCHD_DPDK.exists():
            missing.append(f"openvswitch-switch-dpdk ({OVS_VSWITCHD_DPDK})")
        if not Path("/proc/sys/vm/nr_hugepages").exists():
            missing.append("hugepages (/proc/sys/vm/nr_hugepages)")
    return missing


def host_facts() -> dict:
    """Facts every result records so the numbers can be read correctly."""
    return {
        "host_cores": host_cores(),
        "host_kernel": platform.release(),
        "qemu": qemu_version(),
        "vhost_net": vhost_net_available(),
    }
