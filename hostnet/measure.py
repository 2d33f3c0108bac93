"""One measured guest-to-guest run: the iperf3 number plus what explains it.

Around each iperf3 run we read the guests' interface counters (packets per
second next to bits per second), every host thread's CPU (vCPUs, QEMU main
loops, the PMD) and OVS's PMD statistics, and name the bound in one line. For
TCP, when no CPU ran out, the sender's window against its bytes in flight says
what did.
"""

from __future__ import annotations

import re

from hostnet.cpustat import CpuMeter, busiest_thread, wait_quiet
from hostnet.errors import HostnetError
from hostnet.guestnet import counter_rates, read_counters
from hostnet.iperf import client_command, parse_iperf_json
from hostnet.pmdstats import parse_perf_show, parse_pmd_stats, pmd_summary
from hostnet.tcpwindow import WindowVerdict, window_verdict

PING_SUMMARY = re.compile(
    r"(\d+) packets transmitted, (\d+) packets received.*?"
    r"min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms",
    re.S,
)
PING_TIME = re.compile(r"seq=\d+ ttl=\d+ time=([\d.]+) ms")
FRAME_OVERHEAD = 14 + 20 + 8 + 4  # Ethernet header + IPv4 + UDP + FCS
SMALL_FRAME = 64


def cpu_owners(lab, *guests) -> dict[str, int]:
    owners = {f"qemu {g.name}": g.vm.pid for g in guests}
    if lab.ovs is not None:
        owners["ovs-vswitchd"] = lab.ovs.vswitchd_pid
    return owners


GUEST_BOUND_PERCENT = 90.0


def guest_side(result: dict) -> str | None:
    """What the guests themselves say: iperf3 out of vCPU, or UDP lost inside the receiver."""
    notes = []
    for side in ("sender", "receiver"):
        used = result.get(f"{side}_cpu_percent")
        if used is not None and used >= GUEST_BOUND_PERCENT:
            notes.append(f"the {side} guest's iperf3 used {used:.0f}% of its vCPU")
    lost = result.get("lost_percent")
    sent, arrived = result["client_nic"]["tx_pps"], result["server_nic"]["rx_pps"]
    if lost and lost >= 1 and sent and arrived and arrived >= 0.99 * sent:
        notes.append(
            f"{lost:.0f}% UDP loss although every frame reached the receiver's NIC: dropped in its socket buffer"
        )
    return "; ".join(notes) or None


def bound_line(cpu: dict, pmd: dict | None, guest: str | None = None, window: WindowVerdict | None = None) -> str:
    """The one-line bound: a PMD out of processing cycles beats what thread CPU says.

    A sleeping PMD (pmd-maxsleep) reports shares of the cycles it ran, so its
    processing share is scaled by the CPU its thread actually got. A guest
    whose iperf3 used its whole vCPU is named before host threads, which cannot
    show it under TCG (a halted vCPU thread waits, it does not spin). A thread
    at a full core, starved guests or busy cores still win over the TCP window
    (its numbers follow them); only when the host had CPU to spare does the
    window verdict replace "idle CPU".
    """
    host = cpu["bound"]
    pmd_bound = False
    if pmd:
        pmd_cpu = sum(t["cpu_percent"] for t in cpu["threads"] if t["role"] == "pmd")
        busy = pmd["busiest_processing_percent"] * min(pmd_cpu, 100) / 100
        pmd["busy_percent_of_core"] = round(busy, 1)
        pmd["pmd_bound"] = pmd_bound = busy >= 90
        if pmd_bound:
            host = f"PMD: processing packets {busy:.0f}% of a core (PMD-bound); threads: {host}"
    if window and (pmd_bound or cpu.get("cpu_limit")):
        host = f"{host}; {window.brief}"
    elif window:
        idle = f"no thread at a full core ({busiest_thread(cpu['threads'])})"
        host = "; ".join(filter(None, [window.line, idle, cpu.get("disturbed")]))
    return f"guest: {guest}; host: {host}" if guest else host


def measured_run(
    lab,
    client,
    server,
    command: str,
    timeout_s: float,
    quiet: tuple[float, float] = (35.0, 0.0),
    idle_rtt_ms: float | None = None,
) -> dict:
    """Run an iperf3 client command in `client`; return the result with its explanation.

    quiet: (host busy % below which the host counts as quiet, longest wait in s).
    idle_rtt_ms: the unloaded ping RTT, set beside TCP's RTT under load.
    """
    calm = wait_quiet(*quiet) if quiet[1] > 0 else None
    before = {"client": read_counters(client.vm), "server": read_counters(server.vm)}
    if lab.ovs is not None:
        lab.ovs.clear_pmd_stats()
    meter = CpuMeter(cpu_owners(lab, client, server)).start()
    output = client.vm.run(command, timeout_s=timeout_s, check=False)
    cpu = meter.stop()
    result = parse_iperf_json(output)
    seconds = result.duration_s
    pmd = None
    if lab.ovs is not None:
        stats_text, perf_text = lab.ovs.pmd_stats()
        pmd = {
            **pmd_summary(parse_pmd_stats(stats_text), cpu["interval_s"]),
            "perf": parse_perf_show(perf_text),
            "pmd_stats_show": stats_text,
            "pmd_perf_show": perf_text,
        }
    after = {"client": read_counters(client.vm), "server": read_counters(server.vm)}
    run = {
        **result.to_dict(),
        "client_nic": counter_rates(before["client"], after["client"], seconds),
        "server_nic": counter_rates(before["server"], after["server"], seconds),
        "host_cpu": cpu,
        "pmd": pmd,
        "quiet_wait": calm,
    }
    window = None
    if result.tcp_window is not None:
        window = window_verdict(result.tcp_window, result.sender_cpu_percent, idle_rtt_ms)
        run["tcp_window"]["verdict"] = window.kind
    run["bound"] = bound_line(cpu, pmd, guest_side(run), window)
    return run


def small_packet_run(
    lab, client, server, offered_pps: int, seconds: float, quiet: tuple[float, float] = (35.0, 0.0)
) -> dict:
    """64-byte frames (18-byte UDP payload) at a fixed offered rate: delivered pps and loss."""
    payload = SMALL_FRAME - FRAME_OVERHEAD
    command = client_command(
        server.ip, seconds=seconds, udp=True, udp_bitrate=str(offered_pps * payload * 8), length=payload
    )
    run = measured_run(lab, client, server, command, timeout_s=seconds * 4 + 60, quiet=quiet)
    packets, lost = run.get("packets") or 0, run.get("lost_packets") or 0
    return {
        "frame_bytes": SMALL_FRAME,
        "offered_pps": offered_pps,
        "sent_pps": round(packets / run["duration_s"]) if run["duration_s"] else None,
        "delivered_pps": round((packets - lost) / run["duration_s"]) if run["duration_s"] else None,
        "loss_percent": run["lost_percent"],
        **{
            k: run[k]
            for k in ("client_nic", "server_nic", "host_cpu", "pmd", "bound", "sender_cpu_percent", "quiet_wait")
        },
    }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def parse_ping(output: str) -> dict:
    """busybox ping summary -> counts and RTTs in ms.

    Raises:
        HostnetError: no summary line in the output.
    """
    match = PING_SUMMARY.search(output)
    if not match:
        raise HostnetError(f"no ping summary in output: {output[-300:]!r}")
    sent, received = int(match.group(1)), int(match.group(2))
    return {
        "sent": sent,
        "received": received,
        "loss_percent": round(100 * (sent - received) / sent, 1) if sent else None,
        "rtt_min_ms": float(match.group(3)),
        "rtt_avg_ms": float(match.group(4)),
        "rtt_max_ms": float(match.group(5)),
    }


def parse_ping_times(output: str) -> dict:
    """Per-reply RTTs from busybox ping -> percentiles in ms.

    Raises:
        HostnetError: not one reply in the output.
    """
    times = [float(t) for t in PING_TIME.findall(output)]
    if not times:
        raise HostnetError(f"no ping replies in output: {output[-300:]!r}")
    return {
        "replies": len(times),
        **{f"p{p}_ms": percentile(times, p) for p in (50, 90, 99)},
        "max_ms": max(times),
        "min_ms": min(times),
    }


def latency_run(client, server, count: int, interval_s: float) -> dict:
    timeout = count * (interval_s + 1) + 30
    output = client.vm.run(f"ping -c {count} -i {interval_s:g} {server.ip}", timeout_s=timeout, check=False)
    return {"interval_s": interval_s, **parse_ping(output), **parse_ping_times(output)}
