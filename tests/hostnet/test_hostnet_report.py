"""The bench tables and plot read what run_bench writes."""

from hostnet.report import format_small_table, format_table, notes, plot_bench


def _report():
    cpu = {"foreign_percent": 3.0}
    nic = {"rx_pps": 5400, "rx_bytes_per_packet": 56000}
    small = [
        {"offered_pps": o, "sent_pps": o, "delivered_pps": o - 10, "loss_percent": 0.1, "bound": "guest-bound"}
        for o in (10000, 30000)
    ]
    row = {
        "backend": "vhost-user",
        "queues": 2,
        "vcpus": 2,
        "tcp": {
            "mbps": 2485.0,
            "retransmits": 1,
            "server_nic": nic,
            "host_cpu": cpu,
            "bound": "window-limited",
            "tcp_window": {
                "rtt_mean_ms": 2.84,
                "in_flight_bytes": 882_000,
                "window_mean_bytes": 870_000,
                "limiting_window": "receiver window",
            },
        },
        "udp": {"mbps": 206.0, "lost_percent": 21.2},
        "latency": {"p50_ms": 1.74, "p90_ms": 2.1, "p99_ms": 20.2},
        "small_packets": small,
        "scaling_note": "2 host cores: 2 rx queues share 1 PMD core(s)",
    }
    return {
        "results": [row],
        "conditions": {
            "accelerator": "tcg",
            "host_cores": 2,
            "ovs_pmd_cores": [1],
            "ovs_userspace_tso": True,
            "guest": {"cpu_model": "qemu64"},
        },
    }


def test_tables_carry_pps_bytes_per_packet_latency_percentiles_and_the_bound():
    report = _report()
    assert format_table(report) == [
        [
            "vhost-user",
            "2",
            "2",
            "2485",
            "5.4",
            "56000",
            "1",
            "2.8",
            "882/870 rwnd",
            "206",
            "21.2",
            "1.74/20.20",
            "3",
            "window-limited",
        ]
    ]
    assert [r[2:6] for r in format_small_table(report)] == [
        ["10000", "10000", "9990", "0.1"],
        ["30000", "30000", "29990", "0.1"],
    ]
    assert notes(report) == ["q=2: 2 host cores: 2 rx queues share 1 PMD core(s)"]
    del report["results"][0]["tcp"]["tcp_window"]
    assert format_table(report)[0][7:9] == ["-", "-"]


def test_plot_has_throughput_small_packets_and_latency(tmp_path):
    path = plot_bench(_report(), tmp_path / "bench.png")
    assert path.stat().st_size > 1000
