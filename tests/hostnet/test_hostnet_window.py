"""The TCP window against bytes in flight: parsing iperf3's tcp_info and naming the bound.

The samples in data/ are iperf3 3.12 -J output captured from the client guest
(Debian 6.1 kernel, TCG, tap + bridge, 256 MB guests): one stream for 8 s at
1 s intervals, and two streams for 4 s at 0.5 s intervals.
"""

import json
from pathlib import Path

import pytest

from hostnet.cpustat import IDLE_CPU, busiest_thread
from hostnet.iperf import parse_iperf_json
from hostnet.measure import bound_line
from hostnet.tcpwindow import CWND, RECEIVER_WINDOW, TcpWindow, parse_windows, window_verdict

DATA = Path(__file__).parent / "data"


def _sample(name: str) -> str:
    return (DATA / name).read_text()


def _window(**fields) -> TcpWindow:
    """2.4 Gbit/s at 2.8 ms: 840 KB in flight, against a cwnd of 830 KB."""
    base = dict(
        bits_per_second=2.4e9,
        rtt_mean_ms=2.8,
        rtt_min_ms=1.9,
        rtt_max_ms=4.0,
        cwnd_mean_bytes=830_000.0,
        cwnd_max_bytes=900_000,
        snd_wnd_mean_bytes=1_500_000.0,
        snd_wnd_max_bytes=1_500_000,
        window_mean_bytes=830_000.0,
        limiting_window=CWND,
        in_flight_bytes=2.4e9 * 2.8e-3 / 8,
        samples=16,
    )
    return TcpWindow(**{**base, **fields})


def test_one_guest_stream_gives_rtt_windows_and_bytes_in_flight():
    result = parse_iperf_json(_sample("iperf3-tcp-guest.json"))
    window = result.tcp_window
    assert (window.rtt_mean_ms, window.rtt_min_ms, window.rtt_max_ms) == (4.866, 3.943, 7.223)
    assert window.cwnd_mean_bytes == 1637688 and window.cwnd_max_bytes == 1637688
    receiver_samples = [404864, 754816, 450560, 570496, 557056, 471040, 588416, 590464]
    assert window.snd_wnd_mean_bytes == sum(receiver_samples) / 8
    assert window.snd_wnd_max_bytes == 754816
    assert window.limiting_window == RECEIVER_WINDOW
    assert window.window_mean_bytes == window.snd_wnd_mean_bytes
    assert window.in_flight_bytes == pytest.approx(result.bits_per_second * 4.866e-3 / 8)
    assert window.samples == 8 and result.tcp_streams == (window,)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["tcp_window"]["fill"] == pytest.approx(window.in_flight_bytes / 548464, abs=1e-3)


def test_two_streams_add_windows_and_bytes_in_flight_and_weight_the_rtt_by_throughput():
    result = parse_iperf_json(_sample("iperf3-tcp-guest-2streams.json"))
    first, second = result.tcp_streams
    total = result.tcp_window
    assert (first.rtt_mean_ms, second.rtt_mean_ms) == (4.13, 4.26)
    assert first.cwnd_max_bytes == 761648 and second.snd_wnd_max_bytes == 726688
    assert total.in_flight_bytes == pytest.approx(first.in_flight_bytes + second.in_flight_bytes)
    assert total.cwnd_mean_bytes == first.cwnd_mean_bytes + second.cwnd_mean_bytes
    assert total.window_mean_bytes == first.window_mean_bytes + second.window_mean_bytes
    assert total.bits_per_second == pytest.approx(result.bits_per_second, rel=1e-9)
    assert 4.13 < total.rtt_mean_ms < 4.26
    assert (total.rtt_min_ms, total.rtt_max_ms) == (2.789, 5.713)
    assert first.samples == second.samples == 8


def _report(intervals, sender):
    return {
        "intervals": [{"streams": [s]} for s in intervals],
        "end": {"streams": [{"sender": sender, "receiver": {"bits_per_second": 8e8}}]},
    }


def test_a_kernel_without_snd_wnd_leaves_the_cwnd_as_the_window():
    intervals = [{"socket": 5, "snd_cwnd": c, "rtt": 2000, "omitted": False} for c in (100_000, 300_000)]
    sender = {"socket": 5, "mean_rtt": 2000, "min_rtt": 2000, "max_rtt": 2000, "max_snd_cwnd": 300_000}
    streams, total = parse_windows(_report(intervals, sender))
    assert total.snd_wnd_mean_bytes is None and total.snd_wnd_max_bytes is None
    assert total.window_mean_bytes == 200_000 and total.limiting_window == CWND
    assert total.in_flight_bytes == 8e8 * 2e-3 / 8


def test_a_receiving_client_or_omitted_intervals_give_no_window():
    receiving = _report([{"socket": 5, "rtt": 0, "omitted": False}], {"socket": 5})
    assert parse_windows(receiving) == ([], None)
    omitted = _report([{"socket": 5, "snd_cwnd": 9, "omitted": True}], {"socket": 5, "mean_rtt": 2000})
    assert parse_windows(omitted) == ([], None)


def test_bytes_in_flight_filling_the_cwnd_are_window_limited_by_the_cwnd():
    verdict = window_verdict(_window())
    assert verdict.kind == "window-limited"
    assert verdict.line == (
        "window-limited: 840 KB in flight ~ window 830 KB (101%), set by the "
        "cwnd, per 2.8 ms RTT (cwnd 830 KB, receiver window 1500 KB)"
    )
    with_ping = window_verdict(_window(), idle_rtt_ms=1.37)
    assert "per 2.8 ms RTT vs 1.4 ms idle ping (cwnd 830 KB" in with_ping.line


def test_the_smaller_receiver_window_is_named_when_it_limits():
    window = _window(snd_wnd_mean_bytes=700_000.0, window_mean_bytes=700_000.0, limiting_window=RECEIVER_WINDOW)
    verdict = window_verdict(window)
    assert verdict.kind == "window-limited" and "set by the receiver window" in verdict.line
    assert "(120%)" in verdict.line


def test_a_window_far_larger_than_what_is_in_flight_is_sender_limited():
    verdict = window_verdict(_window(in_flight_bytes=300_000.0), sender_cpu_percent=54.2)
    assert verdict.kind == "sender-limited"
    line = verdict.line
    assert line.startswith("sender-limited: 300 KB in flight, short of the window 830 KB (36%)")
    assert line.endswith(
        "the sender does not fill its window (its application, CPU or send buffer); its iperf3 used 54% of its vCPU"
    )


def test_the_match_is_within_a_quarter_of_the_window_either_side():
    def kind(fill):
        return window_verdict(_window(in_flight_bytes=fill * 830_000)).kind

    assert [kind(f) for f in (0.74, 0.76, 1.24, 1.3)] == [
        "sender-limited",
        "window-limited",
        "window-limited",
        "unexplained",
    ]


def _cpu(*threads, cpu_limit=None, disturbed=None):
    rows = [{"owner": o, "thread": t, "role": r, "cpu_percent": p} for o, t, r, p in threads]
    bound = "; ".join(filter(None, [cpu_limit or IDLE_CPU, disturbed]))
    return {"threads": rows, "cpu_limit": cpu_limit, "disturbed": disturbed, "bound": bound}


IDLE_THREADS = (
    ("qemu cli", "CPU 0/TCG", "vcpu", 61.0),
    ("qemu srv", "CPU 0/TCG", "vcpu", 54.3),
    ("ovs-vswitchd", "pmd-c01/id:8", "pmd", 99.0),
)


def test_with_cpu_to_spare_the_window_is_the_bound_and_the_busiest_thread_is_named():
    window = window_verdict(_window())
    line = bound_line(_cpu(*IDLE_THREADS), None, window=window)
    assert line.startswith("window-limited: 840 KB in flight ~ window 830 KB")
    assert line.endswith("; no thread at a full core (busiest: qemu cli CPU 0/TCG 61%)")
    disturbed = bound_line(_cpu(*IDLE_THREADS, disturbed="disturbed: others used 40%"), None, window=window)
    assert disturbed.endswith("(busiest: qemu cli CPU 0/TCG 61%); disturbed: others used 40%")


def test_a_thread_at_a_full_core_or_starved_guests_still_win_over_the_window():
    window = window_verdict(_window())
    hot = _cpu(("qemu cli", "CPU 0/TCG", "vcpu", 99.0), cpu_limit="thread at a full core: qemu cli CPU 0/TCG (99%)")
    assert bound_line(hot, None, window=window) == (
        "thread at a full core: qemu cli CPU 0/TCG (99%); TCP: 840 KB in flight, "
        "window 830 KB (101%) set by the cwnd, per 2.8 ms RTT"
    )
    starved = _cpu(*IDLE_THREADS, cpu_limit="CPU-starved: guest threads use 180%")
    assert bound_line(starved, None, window=window).startswith("CPU-starved")


def test_a_pmd_out_of_cycles_wins_over_the_window_and_the_guest_note_comes_first():
    window = window_verdict(_window())
    pmd = {"busiest_processing_percent": 95.0}
    assert bound_line(_cpu(*IDLE_THREADS), pmd, window=window).startswith("PMD: processing")
    line = bound_line(_cpu(*IDLE_THREADS), None, "the sender guest's iperf3 used 93%", window)
    assert line.startswith("guest: the sender guest's iperf3 used 93%; host: window-limited")


def test_without_a_window_idle_cpu_says_so_and_claims_nothing_more():
    assert bound_line(_cpu(*IDLE_THREADS), None) == IDLE_CPU
    assert busiest_thread([]) == "no thread measured"


def test_guest_tcp_buffers_are_read_from_proc():
    from hostnet.guestnet import buffer_max_in_effect, tcp_buffers

    class Guest:
        def run(self, command, check=True):
            return {
                "tcp_rmem": "4096\t131072\t1512000\n",
                "tcp_wmem": "4096 16384 1512000",
                "tcp_adv_win_scale": "1",
                "rmem_max": "212992",
                "wmem_max": "212992",
            }.get(command.rsplit("/", 1)[-1], "")

    buffers = tcp_buffers(Guest())
    assert buffers == {
        "tcp_rmem": [4096, 131072, 1512000],
        "tcp_wmem": [4096, 16384, 1512000],
        "tcp_adv_win_scale": [1],
        "rmem_max": [212992],
        "wmem_max": [212992],
    }
    assert buffer_max_in_effect(buffers) == 1512000
    assert buffer_max_in_effect({**buffers, "tcp_wmem": [4096, 16384, 6291456]}) is None
    assert buffer_max_in_effect({"tcp_rmem": None, "tcp_wmem": None}) is None
