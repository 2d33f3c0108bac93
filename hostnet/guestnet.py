"""What a guest's virtio-net negotiated and counted, read over its control shell.

Userspace TSO or mergeable buffers only help if the guest driver and the device
agreed on them, so results carry the negotiated feature bits, ethtool's offload
switches and the interface counters (packets per second and bytes per packet
show whether 64 KB segments actually crossed the link).
"""

from __future__ import annotations

import re

# virtio-net feature bits (virtio spec 5.1.3) worth reporting.
VIRTIO_NET_FEATURES = {
    0: "csum",
    1: "guest_csum",
    7: "guest_tso4",
    8: "guest_tso6",
    10: "guest_ufo",
    11: "host_tso4",
    12: "host_tso6",
    14: "host_ufo",
    15: "mrg_rxbuf",
    17: "ctrl_vq",
    22: "mq",
    28: "indirect_desc",
    29: "event_idx",
    32: "version_1",
}
ETHTOOL_K_KEYS = (
    "rx-checksumming",
    "tx-checksumming",
    "scatter-gather",
    "tcp-segmentation-offload",
    "generic-segmentation-offload",
    "generic-receive-offload",
    "large-receive-offload",
)
COUNTERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "tx_dropped")


def decode_features(bits: str) -> dict[str, bool]:
    """The sysfs feature string ('1' at position i = feature bit i) -> named flags."""
    bits = bits.strip()
    return {name: bit < len(bits) and bits[bit] == "1" for bit, name in VIRTIO_NET_FEATURES.items()}


def parse_ethtool_k(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(":")
        if key in ETHTOOL_K_KEYS:
            found[key] = value.strip().split()[0] if value.strip() else ""
    return found


def parse_ethtool_s(output: str) -> dict[str, int]:
    stats = {}
    for match in re.finditer(r"^\s*([\w.]+):\s*(\d+)\s*$", output, re.M):
        stats[match.group(1)] = int(match.group(2))
    return stats


def parse_counters(output: str) -> dict[str, int]:
    values = {}
    for line in output.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in COUNTERS and value.strip().isdigit():
            values[name.strip()] = int(value)
    return values


def read_counters(vm, ifname: str = "eth0") -> dict[str, int]:
    """Interface counters plus the driver's per-queue statistics (ethtool -S, as 'q.<name>')."""
    base = f"/sys/class/net/{ifname}/statistics"
    out = vm.run("; ".join(f"echo {c}=$(cat {base}/{c})" for c in COUNTERS))
    driver = parse_ethtool_s(vm.run(f"ethtool -S {ifname}", check=False))
    return {**parse_counters(out), **{f"q.{k}": v for k, v in driver.items()}}


def counter_rates(before: dict[str, int], after: dict[str, int], seconds: float) -> dict:
    """Packets per second, bits per second and bytes per packet over an interval."""
    d = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}
    rates = {}
    for way in ("rx", "tx"):
        packets, octets = d[f"{way}_packets"], d[f"{way}_bytes"]
        rates[f"{way}_pps"] = round(packets / seconds) if seconds > 0 else None
        rates[f"{way}_mbps"] = round(8 * octets / seconds / 1e6, 1) if seconds > 0 else None
        rates[f"{way}_bytes_per_packet"] = round(octets / packets) if packets else None
        rates[f"{way}_dropped"] = d[f"{way}_dropped"]
    driver = {k[2:]: after[k] - before.get(k, 0) for k in after if k.startswith("q.")}
    rates["driver"] = {k: v for k, v in driver.items() if v}
    packets = sum(v for k, v in driver.items() if k.endswith("_packets") and "tx_queue" in k)
    kicks = sum(v for k, v in driver.items() if k.endswith("_kicks") and "tx_queue" in k)
    rates["tx_packets_per_kick"] = round(packets / kicks, 1) if kicks else None
    return rates


def describe_nic(vm, ifname: str = "eth0") -> dict:
    """Negotiated features, offload switches and driver statistics of a guest NIC."""
    features = vm.run(f"cat /sys/class/net/{ifname}/device/features", check=False)
    offloads = vm.run(f"ethtool -k {ifname}", check=False)
    ring = vm.run(f"ethtool -g {ifname}", check=False)
    return {
        "negotiated": decode_features(features.splitlines()[-1] if features else ""),
        "ethtool_k": parse_ethtool_k(offloads),
        "ring": _parse_ring(ring),
        "mtu": _int(vm.run(f"cat /sys/class/net/{ifname}/mtu", check=False)),
    }


def tcp_buffers(vm) -> dict:
    """The guest's TCP buffer limits (min, default, max bytes) and socket buffer caps.

    The receive buffer's max caps the window a receiver can advertise (a share
    of it set by tcp_adv_win_scale), and the kernel sizes it from guest memory
    unless hostnet.tcp_buffer_max set it. rmem_max/wmem_max cap SO_RCVBUF/SO_SNDBUF.
    """
    values = {}
    for path in ("ipv4/tcp_rmem", "ipv4/tcp_wmem", "ipv4/tcp_adv_win_scale", "core/rmem_max", "core/wmem_max"):
        name = path.split("/")[-1]
        text = vm.run(f"cat /proc/sys/net/{path}", check=False).strip()
        last = text.splitlines()[-1].split() if text else []
        values[name] = [int(v) for v in last] if all(v.lstrip("-").isdigit() for v in last) else None
    return values


def buffer_max_in_effect(buffers: dict) -> int | None:
    """The tcp_rmem/tcp_wmem max the guest runs with, or None when the two differ or are unread."""
    maxes = {(buffers.get(name) or [None])[-1] for name in ("tcp_rmem", "tcp_wmem")}
    return maxes.pop() if len(maxes) == 1 else None


def _parse_ring(output: str) -> dict:
    current = output.split("Current hardware settings:")[-1]
    values = {}
    for key in ("RX", "TX"):
        match = re.search(rf"^{key}:\s*(\d+)", current, re.M)
        if match:
            values[key.lower()] = int(match.group(1))
    return values


def _int(text: str) -> int | None:
    text = text.strip().splitlines()[-1] if text.strip() else ""
    return int(text) if text.isdigit() else None
