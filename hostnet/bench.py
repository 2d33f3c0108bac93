"""Guest-to-guest benchmark per backend and queue count: throughput, small packets, latency.

Two guests per case; the client guest runs iperf3 and ping against the server
guest. Every number comes with what explains it (host CPU per thread, PMD
statistics, packets per second, the guests' negotiated offloads) and a one-line
bound, and every setting that shapes it is recorded, since TCG on 2 host cores
is nothing like KVM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hostnet.errors import HostnetError
from hostnet.guestnet import buffer_max_in_effect, describe_nic, tcp_buffers
from hostnet.host import Accelerator, host_cores, host_facts
from hostnet.image import GuestImage
from hostnet.iperf import client_command
from hostnet.lab import RUN_ROOT, Lab, LabGuest, LabSettings, guest_cores
from hostnet.measure import latency_run, measured_run, parse_ping, small_packet_run
from hostnet.ovs import OvsSettings
from hostnet.vm import GuestTuning, nic_vectors

__all__ = ["BenchConfig", "run_bench", "parse_ping", "wait_iperf_listening", "scaling_note"]


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("virtio-net", "vhost-user")
    queues: tuple[int, ...] = (1, 2)
    iperf_seconds: float = 5
    vcpus: int | None = None  # None: as many as queues
    memory_mb: int = 256
    udp_bitrate: str = "1G"
    ping_count: int = 100
    ping_interval_s: float = 0.02
    small_loads_pps: tuple[int, ...] = (10000, 30000, 100000)  # 64-byte frames offered
    small_seconds: float = 2
    quiet_busy_percent: float = 35.0  # host counts as quiet below this (2 idle guests: ~10 %)
    quiet_wait_s: float = 30  # longest wait for a quiet host before each measurement
    ovs: OvsSettings = field(default_factory=OvsSettings)
    guest: GuestTuning = field(default_factory=GuestTuning)

    def vcpus_for(self, queues: int) -> int:
        return self.vcpus if self.vcpus else queues


def scaling_note(queues: int, vcpus: int, ovs: OvsSettings, cores: int) -> str | None:
    """Why more queues cannot add throughput on this host, or None when they can."""
    pmds = len(ovs.pmd_cores())
    free = len(guest_cores("vhost-user", ovs, cores))
    if queues <= 1:
        return None
    short = []
    if pmds < queues:
        short.append(f"{queues} rx queues share {pmds} PMD core(s)")
    if 2 * vcpus > free:
        short.append(f"2 guests x {vcpus} vCPUs share {free} core(s) left to guests")
    if not short:
        return None
    return f"{cores} host cores: " + "; ".join(short) + ", so queues beyond the first add no parallel work here"


def wait_iperf_listening(vm, port: int = 5201, timeout_s: float = 30) -> None:
    """Start iperf3 -s in a guest and wait until its port is open (inside the guest)."""
    vm.run("iperf3 -s -D")
    tenths = int(timeout_s * 10)
    vm.run(
        f"i=0; while ! netstat -ltn | grep -q ':{port} '; do i=$((i+1)); "
        f"[ $i -gt {tenths} ] && exit 1; sleep 0.1; done",
        timeout_s=timeout_s + 30,
    )


def conditions(config: BenchConfig, accel: Accelerator, image: GuestImage) -> dict:
    return {
        **host_facts(),
        "accelerator": accel.name,
        "accelerator_reason": accel.reason,
        "guest_memory_mb": config.memory_mb,
        "guest_kernel": image.kernel_release,
        "iperf_seconds": config.iperf_seconds,
        "udp_bitrate": config.udp_bitrate,
        "ping_count": config.ping_count,
        "ping_interval_s": config.ping_interval_s,
        "small_loads_pps": list(config.small_loads_pps),
        "small_seconds": config.small_seconds,
        "quiet_busy_percent": config.quiet_busy_percent,
        "quiet_wait_s": config.quiet_wait_s,
        "ovs_pmd_cpu_mask": hex(config.ovs.pmd_cpu_mask),
        "ovs_pmd_cores": config.ovs.pmd_cores(),
        "ovs_userspace_tso": config.ovs.tso,
        "ovs_socket_mem_mb": config.ovs.socket_mem_mb,
        "ovs": config.ovs.as_dict(),
        "guest": config.guest.as_dict(),
    }


def run_bench(
    image: GuestImage,
    config: BenchConfig,
    accel: Accelerator,
    progress: Callable[[str], None] = lambda _: None,
    run_root: Path = RUN_ROOT,
) -> dict:
    """Run every backend x queue case and return the report (a JSON-ready dict)."""
    image.require_controllable("bench")
    rows = []
    started = time.time()
    for backend in config.backends:
        settings = LabSettings(
            backend=backend,
            image=image,
            accel=accel.name,
            memory_mb=config.memory_mb,
            max_guests=2,
            ovs=config.ovs,
            guest=config.guest,
        )
        progress(f"{backend}: setting up the lab")
        with Lab(settings, run_root) as lab:
            for queues in config.queues:
                progress(f"{backend}, {queues} queue(s): booting two guests")
                rows.append(_measure_case(lab, config, queues, progress))
    return {
        "kind": "hostnet-bench",
        "conditions": conditions(config, accel, image),
        "results": rows,
        "wall_s": round(time.time() - started, 1),
    }


def _measure_case(lab: Lab, config: BenchConfig, queues: int, progress) -> dict:
    vcpus = config.vcpus_for(queues)
    with (
        lab.guest("srv", 0, queues=queues, vcpus=vcpus) as server,
        lab.guest("cli", 1, queues=queues, vcpus=vcpus) as client,
    ):
        server.start()
        client.start()
        server.vm.wait_ready()
        client.vm.wait_ready()
        combined = client.vm.run("ethtool -l eth0 | tail -n 1 | awk '{print $2}'", check=False)
        nics = {"client": describe_nic(client.vm), "server": describe_nic(server.vm)}
        buffers = {"client": tcp_buffers(client.vm), "server": tcp_buffers(server.vm)}
        in_effect = _check_buffer_max(config.guest.tcp_buffer_max, buffers, server, client)
        wait_iperf_listening(server.vm)
        measured = _measure_traffic(lab, config, queues, server, client, progress)
        return {
            "backend": lab.settings.backend,
            "queues": queues,
            "vcpus": vcpus,
            "guest_memory_mb": config.memory_mb,
            "guest_combined_channels": combined.strip() or None,
            "vectors": nic_vectors(server.nic, lab.settings.accel),
            "vhost_net": server.nic.vhost_net if lab.settings.backend == "virtio-net" else None,
            "ovs_n_rxq": queues if lab.settings.backend == "vhost-user" else None,
            "ovs_rxq_affinity": lab.settings.ovs.rxq_affinity_for(queues)
            if lab.settings.backend == "vhost-user"
            else None,
            "vcpu_pinning": {g.name: getattr(g, "pinned", None) for g in (server, client)},
            "scaling_note": scaling_note(queues, vcpus, lab.settings.ovs, host_cores()),
            "guest_nic": nics,
            "guest_tcp_buffers": buffers,
            "guest_tcp_buffer_max": in_effect,
            **measured,
        }


def _check_buffer_max(wanted: int | None, buffers: dict, server: LabGuest, client: LabGuest) -> dict:
    """Each guest's TCP buffer max in effect; a guest that ignored the asked one would skew the comparison.

    Raises:
        HostnetError: a guest runs with another maximum than `wanted`.
    """
    in_effect = {side: buffer_max_in_effect(b) for side, b in buffers.items()}
    if wanted and any(v != wanted for v in in_effect.values()):
        raise HostnetError(
            f"guests run with TCP buffer max {in_effect}, not the "
            f"{wanted} asked for (hostnet.tcp_buffer_max=); check "
            f"{server.vm.control_log} and {client.vm.control_log}"
        )
    return in_effect


def _measure_traffic(lab: Lab, config: BenchConfig, queues: int, server: LabGuest, client: LabGuest, progress) -> dict:
    """Latency first, while the path is idle: the TCP run judges its window against that RTT."""
    label = f"{lab.settings.backend}, {queues} queue(s)"
    progress(f"{label}: ping latency")
    latency = latency_run(client, server, config.ping_count, config.ping_interval_s)
    timeout = config.iperf_seconds * 4 + 60
    quiet = (config.quiet_busy_percent, config.quiet_wait_s)
    progress(f"{label}: iperf3 TCP")
    tcp = measured_run(
        lab,
        client,
        server,
        client_command(server.ip, seconds=config.iperf_seconds, streams=queues),
        timeout,
        quiet,
        idle_rtt_ms=latency["p50_ms"],
    )
    progress(f"{label}: iperf3 UDP")
    udp = measured_run(
        lab,
        client,
        server,
        client_command(
            server.ip, seconds=config.iperf_seconds, streams=queues, udp=True, udp_bitrate=config.udp_bitrate
        ),
        timeout,
        quiet,
    )
    small = []
    for pps in config.small_loads_pps:
        progress(f"{label}: 64-byte UDP at {pps} pps")
        small.append(small_packet_run(lab, client, server, pps, config.small_seconds, quiet))
    return {"tcp": tcp, "udp": udp, "small_packets": small, "latency": latency}
