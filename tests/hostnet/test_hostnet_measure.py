"""Reading what explains a number: thread CPU, PMD statistics, guest NIC, stream intervals."""

from pathlib import Path

from hostnet.cpustat import ThreadSample, bound_statement, summarize, thread_role
from hostnet.guestnet import counter_rates, decode_features, parse_counters, parse_ethtool_k
from hostnet.measure import bound_line, parse_ping_times, percentile
from hostnet.pmdstats import parse_perf_show, parse_pmd_stats, pmd_summary
from hostnet.stream import parse_interval, stream_report

DATA = Path(__file__).parent / "data"


def test_thread_roles_follow_qemu_debug_thread_names_and_ovs_pmd_names():
    assert thread_role(10, 12, "CPU 0/TCG") == "vcpu"
    assert thread_role(10, 12, "CPU 3/KVM") == "vcpu"
    assert thread_role(20, 25, "pmd-c01/id:8") == "pmd"
    assert thread_role(10, 10, "qemu-system-x86") == "main"
    assert thread_role(10, 11, "call_rcu") == "other"


def _threads(**percent):
    return [
        {"owner": "qemu", "thread": name, "role": role, "cpu_percent": p}
        for (name, role), p in ((k.split("_"), v) for k, v in percent.items())
    ]


def test_a_vcpu_at_a_full_core_is_the_bound():
    line = bound_statement(_threads(**{"CPU 0/TCG_vcpu": 99.0, "main_main": 20.0}), 70, cores=2)
    assert line.startswith("thread at a full core: qemu CPU 0/TCG (99%)")


def test_guests_sharing_the_core_a_polling_pmd_leaves_are_cpu_starved():
    threads = _threads(**{"pmd-c01_pmd": 99.0, "CPU 0/TCG_vcpu": 48.0, "CPU 1/TCG_vcpu": 47.0})
    assert bound_statement(threads, 98, cores=2).startswith("CPU-starved")


def test_idle_cpu_and_no_hot_thread_claims_no_cpu_bound():
    line = bound_statement(_threads(**{"CPU 0/TCG_vcpu": 70.0}), 60, cores=2)
    assert line.startswith("no thread at a full core and the host has idle CPU")


def test_summarize_turns_ticks_into_percent_of_a_core():
    before = {1: ThreadSample("qemu srv", 1, 1, "CPU 0/TCG", 100)}
    after = {
        1: ThreadSample("qemu srv", 1, 1, "CPU 0/TCG", 100 + 200),
        2: ThreadSample("qemu srv", 1, 2, "qemu-system-x86", 50),
    }
    from hostnet.cpustat import CLOCK_TICKS

    result = summarize(before, after, 200 / CLOCK_TICKS, 80.0)
    assert result["threads"][0]["cpu_percent"] == 100.0
    assert result["saturated"] == ["qemu srv CPU 0/TCG"]
    assert result["by_role"]["qemu srv vcpu"] == 100.0
    import os

    cores = len(os.sched_getaffinity(0))
    ours = sum(t["cpu_percent"] for t in result["threads"])
    assert result["foreign_percent"] == max(0.0, 80.0 * cores - ours)
    assert ("disturbed" in result["bound"]) == (result["foreign_percent"] >= 25)
    assert result["cpu_limit"] == "thread at a full core: qemu srv CPU 0/TCG (100%)"


def test_pmd_stats_show_from_ovs_3_1():
    stats = parse_pmd_stats((DATA / "pmd-stats-show.txt").read_text())
    pmd = stats["pmd thread numa_id 0 core_id 1"]
    assert pmd["packets received"] == 7735
    assert pmd["processing cycles %"] == 8.54
    assert pmd["avg processing cycles per packet"] == 119100.53
    summary = pmd_summary(stats, 4.2)
    assert summary["pmds"]["pmd thread numa_id 0 core_id 1"]["pps"] == round(7735 / 4.2)
    assert summary["pmd_bound"] is False


def test_pmd_perf_show_headline_numbers():
    perf = parse_perf_show((DATA / "pmd-perf-show.txt").read_text())
    assert perf["Rx packets"] == 7735
    assert perf["Tx packets"] == 7737
    assert perf["busy iterations"] == 7054


def test_a_sleeping_pmd_is_judged_by_the_cpu_it_got():
    pmd = {"busiest_processing_percent": 98.0, "pmd_bound": True}
    cpu = {"threads": [{"role": "pmd", "cpu_percent": 10.0}], "bound": "threads say so"}
    assert bound_line(cpu, pmd) == "threads say so"
    assert pmd["busy_percent_of_core"] == 9.8 and pmd["pmd_bound"] is False
    busy = {"busiest_processing_percent": 97.0}
    assert bound_line({"threads": [{"role": "pmd", "cpu_percent": 100.0}], "bound": "x"}, busy).startswith(
        "PMD: processing packets 97% of a core"
    )


def test_virtio_feature_bits_and_ethtool_offloads():
    bits = "1100000100011001010001000000110110000000000000000000000000000000"
    features = decode_features(bits)
    assert features["csum"] and features["guest_csum"] and features["guest_tso4"]
    assert features["host_tso4"] and features["mrg_rxbuf"] and not features["host_ufo"]
    assert features["version_1"]
    offloads = parse_ethtool_k(
        "Features for eth0:\nrx-checksumming: on [fixed]\n"
        "tcp-segmentation-offload: on\n\ttx-tcp-segmentation: on\n"
        "large-receive-offload: off [fixed]\n"
    )
    assert offloads == {"rx-checksumming": "on", "tcp-segmentation-offload": "on", "large-receive-offload": "off"}


def test_counter_rates_give_pps_and_bytes_per_packet():
    before = parse_counters("rx_packets=100\nrx_bytes=1000\ntx_packets=0\ntx_bytes=0\nrx_dropped=0\ntx_dropped=0")
    after = parse_counters(
        "rx_packets=2100\nrx_bytes=100001000\ntx_packets=10\ntx_bytes=660\nrx_dropped=0\ntx_dropped=0"
    )
    rates = counter_rates(before, after, 2.0)
    assert rates["rx_pps"] == 1000 and rates["rx_bytes_per_packet"] == 50000
    assert rates["rx_mbps"] == 400.0 and rates["tx_bytes_per_packet"] == 66


def test_ping_percentiles_use_every_reply():
    out = "".join(
        f"64 bytes from 10.66.0.10: seq={i} ttl=64 time={t} ms\n" for i, t in enumerate([1.0, 2.0, 3.0, 4.0, 10.0])
    )
    result = parse_ping_times(out)
    assert result["replies"] == 5 and result["p50_ms"] == 3.0 and result["p99_ms"] == 10.0
    assert percentile([5.0], 90) == 5.0 and percentile([], 50) is None


def test_stream_intervals_place_the_migration_on_the_timeline():
    lines = [
        f"[  5]   {i / 10:.2f}-{(i + 1) / 10:.2f}   sec  30 MBytes  "
        f"{0.0 if i in (20, 21) else 2.5} Gbits/sec    {3 if i == 22 else 0}    512 KBytes"
        for i in range(40)
    ]
    intervals = [{**parse_interval(line), "host_time": 1000.0 + (i + 1) / 10} for i, line in enumerate(lines)]
    assert parse_interval("[  5]   0.00-4.00   sec  1.2 GBytes  2.6 Gbits/sec   7   sender")["summary"] == "sender"
    report = stream_report(intervals, 1001.95, 1002.25, {"retransmits": 3})
    assert report["mbps_before"] == 2500.0 and report["mbps_after"] == 2500.0
    assert report["longest_zero_gap_ms"] == 200
    assert report["mbps_min_around_migration"] == 0.0
    assert report["retransmits_total"] == 3 and report["retransmits_around_migration"] == 3


def test_the_guest_side_is_named_when_iperf3_ran_out_of_vcpu_or_udp_died_in_the_socket():
    from hostnet.measure import guest_side

    run = {
        "sender_cpu_percent": 93.0,
        "receiver_cpu_percent": 55.0,
        "lost_percent": 21.0,
        "client_nic": {"tx_pps": 22651},
        "server_nic": {"rx_pps": 22651},
    }
    note = guest_side(run)
    assert "sender guest's iperf3 used 93%" in note and "socket buffer" in note
    cpu = {"threads": [], "bound": "latency-bound"}
    assert bound_line(cpu, None, note).startswith("guest: the sender")
    assert (
        guest_side(
            {"sender_cpu_percent": 50.0, "lost_percent": 0.0, "client_nic": {"tx_pps": 1}, "server_nic": {"rx_pps": 1}}
        )
        is None
    )


def test_wait_quiet_measures_one_window_and_reports_it():
    from hostnet.cpustat import wait_quiet

    calm = wait_quiet(101.0, 0.0, window_s=0.2)
    assert calm["quiet"] is True and 0 <= calm["host_busy_percent"] <= 100
    busy = wait_quiet(0.0, 0.0, window_s=0.2)
    assert busy["quiet"] is False and busy["waited_s"] >= 0.2


def test_driver_statistics_give_packets_per_notification():
    from hostnet.guestnet import parse_ethtool_s

    stats = {
        f"q.{k}": v
        for k, v in parse_ethtool_s(
            "NIC statistics:\n     rx_queue_0_packets: 10\n     tx_queue_0_packets: 400\n     tx_queue_0_kicks: 100\n"
        ).items()
    }
    zero = {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0}
    rates = counter_rates({**zero, "q.tx_queue_0_packets": 0, "q.tx_queue_0_kicks": 0}, {**zero, **stats}, 1.0)
    assert rates["tx_packets_per_kick"] == 4.0
    assert rates["driver"] == {"rx_queue_0_packets": 10, "tx_queue_0_packets": 400, "tx_queue_0_kicks": 100}
