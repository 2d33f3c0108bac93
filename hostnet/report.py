"""Tables and the plot of a bench report, shared by the CLI and the README numbers."""

from __future__ import annotations

from pathlib import Path

TABLE_HEADER = [
    "backend",
    "queues",
    "vCPUs",
    "TCP Mbit/s",
    "TCP kpps",
    "B/pkt",
    "TCP retr",
    "TCP RTT ms",
    "in flight/window KB",
    "UDP Mbit/s",
    "UDP loss %",
    "RTT p50/p99 ms",
    "foreign %",
    "TCP bound",
]
WINDOW_NAMES = {"cwnd": "cwnd", "receiver window": "rwnd"}
SMALL_HEADER = ["backend", "queues", "offered pps", "sent pps", "delivered pps", "loss %", "bound"]


def format_table(report: dict) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        tcp, udp, lat = r["tcp"], r["udp"], r["latency"]
        nic = tcp["server_nic"]
        rows.append(
            [
                r["backend"],
                str(r["queues"]),
                str(r["vcpus"]),
                f"{tcp['mbps']:.0f}",
                f"{(nic['rx_pps'] or 0) / 1000:.1f}",
                str(nic["rx_bytes_per_packet"]),
                str(tcp["retransmits"]),
                *window_cells(tcp.get("tcp_window")),
                f"{udp['mbps']:.0f}",
                f"{udp['lost_percent']:.1f}",
                f"{lat['p50_ms']:.2f}/{lat['p99_ms']:.2f}",
                f"{tcp['host_cpu']['foreign_percent']:.0f}",
                tcp["bound"],
            ]
        )
    return rows


def window_cells(window: dict | None) -> list[str]:
    """TCP's mean RTT and its bytes in flight against the window that limits it."""
    if not window:
        return ["-", "-"]
    name = WINDOW_NAMES.get(window["limiting_window"], "both")
    in_flight, size = window["in_flight_bytes"] / 1000, window["window_mean_bytes"] / 1000
    return [f"{window['rtt_mean_ms']:.1f}", f"{in_flight:.0f}/{size:.0f} {name}"]


def format_small_table(report: dict) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        for s in r["small_packets"]:
            rows.append(
                [
                    r["backend"],
                    str(r["queues"]),
                    str(s["offered_pps"]),
                    str(s["sent_pps"]),
                    str(s["delivered_pps"]),
                    f"{s['loss_percent']:.1f}",
                    s["bound"],
                ]
            )
    return rows


def notes(report: dict) -> list[str]:
    return sorted({f"q={r['queues']}: {r['scaling_note']}" for r in report["results"] if r.get("scaling_note")})


def plot_bench(report: dict, path: Path) -> Path:
    """Throughput, 64-byte delivered rate against offered load, and RTT percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    labels = [f"{r['backend']}\nq={r['queues']}" for r in results]
    xs = list(range(len(results)))
    fig, (ax, ax_small, ax_lat) = plt.subplots(1, 3, figsize=(max(12, 4 * len(results)), 4))
    ax.bar([x - 0.2 for x in xs], [r["tcp"]["mbps"] for r in results], 0.4, label="TCP")
    ax.bar([x + 0.2 for x in xs], [r["udp"]["mbps"] for r in results], 0.4, label="UDP")
    ax.set_xticks(xs, labels)
    ax.set_ylabel("Mbit/s (receiver)")
    ax.legend()
    for r, label in zip(results, labels):
        small = r["small_packets"]
        if small:
            ax_small.plot(
                [s["offered_pps"] for s in small],
                [s["delivered_pps"] for s in small],
                marker="o",
                label=label.replace("\n", " "),
            )
    ax_small.set_xlabel("offered 64-byte frames/s")
    ax_small.set_ylabel("delivered frames/s")
    ax_small.legend(fontsize=7)
    for i, key in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        ax_lat.bar(
            [x + (i - 1) * 0.27 for x in xs], [r["latency"][key] for r in results], 0.27, label=key.removesuffix("_ms")
        )
    ax_lat.set_xticks(xs, labels)
    ax_lat.set_ylabel("ping RTT ms")
    ax_lat.legend()
    c = report["conditions"]
    fig.suptitle(
        f"guest to guest, {c['accelerator']}, {c['host_cores']} host cores, "
        f"PMD cores {c['ovs_pmd_cores']}, TSO {'on' if c['ovs_userspace_tso'] else 'off'}, "
        f"cpu {c['guest']['cpu_model']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
