"""Guest-to-guest benchmark per backend and queue count: iperf3 TCP/UDP and ping.

Two guests per case; the client guest runs iperf3 and ping against the server
guest. Each row records the conditions that shape it (accelerator, vCPUs, PMD
cores, TSO, MSI-X vectors), since TCG on 2 host cores is nothing like KVM.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from hostnet.errors import HostnetError
from hostnet.host import Accelerator, host_cores, host_facts
from hostnet.image import GuestImage
from hostnet.iperf import client_command, parse_iperf_json
from hostnet.lab import RUN_ROOT, Lab, LabSettings
from hostnet.ovs import OvsSettings
from hostnet.vm import nic_vectors

PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) packets received.*?"
                          r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms", re.S)


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("virtio-net", "vhost-user")
    queues: tuple[int, ...] = (1, 2)
    iperf_seconds: float = 5
    vcpus: int | None = None  # None: as many as queues, capped at host cores
    memory_mb: int = 256
    udp_bitrate: str = "1G"
    ping_count: int = 10
    ovs: OvsSettings = field(default_factory=OvsSettings)

    def vcpus_for(self, queues: int) -> int:
        return self.vcpus if self.vcpus else max(1, min(queues, host_cores()))


def parse_ping(output: str) -> dict:
    """busybox ping summary -> counts and RTTs in ms.

    Raises:
        HostnetError: no summary line in the output.
    """
    match = PING_SUMMARY.search(output)
    if not match:
        raise HostnetError(f"no ping summary in output: {output[-300:]!r}")
    sent, received = int(match.group(1)), int(match.group(2))
    return {"sent": sent, "received": received,
            "loss_percent": round(100 * (sent - received) / sent, 1) if sent else None,
            "rtt_min_ms": float(match.group(3)), "rtt_avg_ms": float(match.group(4)),
            "rtt_max_ms": float(match.group(5))}


def wait_iperf_listening(vm, port: int = 5201, timeout_s: float = 30) -> None:
    """Start iperf3 -s in a guest and wait until its port is open (inside the guest)."""
    vm.run("iperf3 -s -D")
    tenths = int(timeout_s * 10)
    vm.run(f"i=0; while ! netstat -ltn | grep -q ':{port} '; do i=$((i+1)); "
           f"[ $i -gt {tenths} ] && exit 1; sleep 0.1; done", timeout_s=timeout_s + 30)


def conditions(config: BenchConfig, accel: Accelerator, image: GuestImage) -> dict:
    return {**host_facts(), "accelerator": accel.name, "accelerator_reason": accel.reason,
            "guest_memory_mb": config.memory_mb, "guest_kernel": image.kernel_release,
            "iperf_seconds": config.iperf_seconds, "udp_bitrate": config.udp_bitrate,
            "ovs_pmd_cpu_mask": hex(config.ovs.pmd_cpu_mask),
            "ovs_pmd_cores": config.ovs.pmd_cores(), "ovs_userspace_tso": config.ovs.tso,
            "ovs_socket_mem_mb": config.ovs.socket_mem_mb}


def run_bench(image: GuestImage, config: BenchConfig, accel: Accelerator,
              progress: Callable[[str], None] = lambda _: None, run_root: Path = RUN_ROOT) -> dict:
    """Run every backend x queue case and return the report (a JSON-ready dict)."""
    if not image.controllable:
        raise HostnetError(f"bench needs a hostnet image (kernel + initrd), got {image.describe()}; "
                           "build one with `deployer hostnet image`")
    rows = []
    started = time.time()
    for backend in config.backends:
        settings = LabSettings(backend=backend, image=image, accel=accel.name,
                               memory_mb=config.memory_mb, max_guests=2, ovs=config.ovs)
        progress(f"{backend}: setting up the lab")
        with Lab(settings, run_root) as lab:
            for queues in config.queues:
                progress(f"{backend}, {queues} queue(s): booting two guests")
                rows.append(_measure_case(lab, config, queues, progress))
    return {"kind": "hostnet-bench", "conditions": conditions(config, accel, image),
            "results": rows, "wall_s": round(time.time() - started, 1)}


def _measure_case(lab: Lab, config: BenchConfig, queues: int, progress) -> dict:
    vcpus = config.vcpus_for(queues)
    with lab.guest("srv", 0, queues=queues, vcpus=vcpus) as server, \
            lab.guest("cli", 1, queues=queues, vcpus=vcpus) as client:
        server.start()
        client.start()
        server.vm.wait_ready()
        client.vm.wait_ready()
        combined = client.vm.run("ethtool -l eth0 | tail -n 1 | awk '{print $2}'", check=False)
        wait_iperf_listening(server.vm)
        label = f"{lab.settings.backend}, {queues} queue(s)"
        progress(f"{label}: ping")
        ping = parse_ping(client.vm.run(f"ping -c {config.ping_count} {server.ip}",
                                        timeout_s=config.ping_count * 3 + 30, check=False))
        timeout = config.iperf_seconds * 4 + 60
        progress(f"{label}: iperf3 TCP")
        tcp = parse_iperf_json(client.vm.run(client_command(
            server.ip, seconds=config.iperf_seconds, streams=queues), timeout_s=timeout, check=False))
        progress(f"{label}: iperf3 UDP")
        udp = parse_iperf_json(client.vm.run(client_command(
            server.ip, seconds=config.iperf_seconds, streams=queues, udp=True,
            udp_bitrate=config.udp_bitrate), timeout_s=timeout, check=False))
        return {"backend": lab.settings.backend, "queues": queues, "vcpus": vcpus,
                "guest_memory_mb": config.memory_mb,
                "guest_combined_channels": combined.strip() or None,
                "vectors": nic_vectors(server.nic, lab.settings.accel),
                "vhost_net": server.nic.vhost_net if lab.settings.backend == "virtio-net" else None,
                "ovs_n_rxq": queues if lab.settings.backend == "vhost-user" else None,
                "tcp": tcp.to_dict(), "udp": udp.to_dict(), "ping": ping}


def format_table(report: dict) -> list[list[str]]:
    """Rows for a table: backend, queues, vCPUs, TCP Mbit/s, retr, UDP Mbit/s, loss, RTT."""
    rows = []
    for r in report["results"]:
        rows.append([r["backend"], str(r["queues"]), str(r["vcpus"]),
                     f"{r['tcp']['mbps']:.0f}", str(r["tcp"]["retransmits"]),
                     f"{r['udp']['mbps']:.0f}", f"{r['udp']['lost_percent']:.1f}",
                     f"{r['ping']['rtt_avg_ms']:.2f}"])
    return rows


TABLE_HEADER = ["backend", "queues", "vCPUs", "TCP Mbit/s", "TCP retr", "UDP Mbit/s",
                "UDP loss %", "ping avg ms"]


def plot_bench(report: dict, path: Path) -> Path:
    """A grouped bar chart of TCP and UDP throughput per backend and queue count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    labels = [f"{r['backend']}\nq={r['queues']}" for r in results]
    xs = range(len(results))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(results)), 4))
    ax.bar([x - 0.2 for x in xs], [r["tcp"]["mbps"] for r in results], 0.4, label="TCP")
    ax.bar([x + 0.2 for x in xs], [r["udp"]["mbps"] for r in results], 0.4, label="UDP")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("Mbit/s (receiver)")
    c = report["conditions"]
    ax.set_title(f"guest to guest, {c['accelerator']}, {c['host_cores']} host cores, "
                 f"PMD cores {c['ovs_pmd_cores']}, TSO {'on' if c['ovs_userspace_tso'] else 'off'}",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def config_as_dict(config: BenchConfig) -> dict:
    return asdict(config)
