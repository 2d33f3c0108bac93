"""Parsing iperf3 and ping output, accelerator detection, probe summaries."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hostnet.bench import parse_ping
from hostnet.errors import HostnetError, IperfError
from hostnet.host import detect_accelerator
from hostnet.iperf import IperfServer, client_command, parse_iperf_json
from hostnet.probe import summarize

DATA = Path(__file__).parent / "data"
BUSYBOX_PING = """PING 10.66.0.10 (10.66.0.10): 56 data bytes
64 bytes from 10.66.0.10: seq=0 ttl=64 time=21.815 ms
64 bytes from 10.66.0.10: seq=2 ttl=64 time=2.160 ms

--- 10.66.0.10 ping statistics ---
3 packets transmitted, 2 packets received, 33% packet loss
round-trip min/avg/max = 2.160/11.987/21.815 ms
"""


def test_busybox_ping_summary():
    assert parse_ping(BUSYBOX_PING) == {
        "sent": 3,
        "received": 2,
        "loss_percent": 33.3,
        "rtt_min_ms": 2.16,
        "rtt_avg_ms": 11.987,
        "rtt_max_ms": 21.815,
    }


def test_ping_without_summary_raises():
    with pytest.raises(HostnetError, match="no ping summary"):
        parse_ping("ping: sendto: Network unreachable")


def test_iperf_error_report_raises():
    with pytest.raises(IperfError, match="unable to connect"):
        parse_iperf_json('{"start": {}, "end": {}, "error": "unable to connect to server"}')


def test_iperf_json_with_console_noise_around_it_and_missing_summary():
    with pytest.raises(IperfError, match="lacks"):
        parse_iperf_json('noise {"start": {"test_start": {}}, "end": {}} @@tok:0@@')
    with pytest.raises(IperfError, match="no JSON"):
        parse_iperf_json("iperf3: error")


def test_client_command_rejects_nonsense():
    assert (
        client_command("10.0.0.1", seconds=2, streams=2, udp=True, udp_bitrate="500M")
        == "iperf3 -c 10.0.0.1 -p 5201 -t 2 -i 0.5 -P 2 -J -u -b 500M"
    )
    with pytest.raises(IperfError):
        client_command("10.0.0.1", seconds=0)


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")
@pytest.mark.parametrize("udp", [False, True])
def test_real_iperf3_on_loopback_parses(tmp_path, udp):
    with IperfServer("127.0.0.1", 5391, tmp_path):
        argv = ["iperf3", "-c", "127.0.0.1", "-p", "5391", "-t", "1", "-J"]
        if udp:
            argv += ["-u", "-b", "50M"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    result = parse_iperf_json(out)
    assert result.protocol == ("UDP" if udp else "TCP")
    assert result.bits_per_second > 0
    assert (result.lost_percent is not None) == udp
    assert (result.tcp_window is not None) == (not udp)
    if not udp:
        assert result.tcp_window.rtt_mean_ms > 0 and result.tcp_window.cwnd_mean_bytes > 0
    assert json.dumps(result.to_dict())


def test_accelerator_falls_back_to_tcg_on_pvm(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    accel = detect_accelerator(tmp_path, dev)
    assert accel.name == "tcg" and "kvm_pvm" in accel.reason


def test_accelerator_is_kvm_with_a_real_kvm_module(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    (tmp_path / "sys/module/kvm_intel").mkdir(parents=True)
    assert detect_accelerator(tmp_path, dev).name == "kvm"
    assert detect_accelerator(tmp_path, tmp_path / "absent").name == "tcg"


def test_probe_summary_reports_largest_reply_gap():
    sent = {1: 0.0, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.4}
    replies = {1: 0.001, 2: 0.101, 5: 0.401}  # 3 and 4 lost during a migration
    summary = summarize(sent, replies, 0.1)
    assert summary["lost"] == 2
    assert summary["max_reply_gap_ms"] == pytest.approx(300)
    assert summary["network_downtime_ms"] == pytest.approx(200)


def test_a_guest_kernel_crash_is_found_on_its_console(tmp_path):
    from hostnet.migrate import _kernel_crash

    console = tmp_path / "dst.console.log"
    assert _kernel_crash(console) is None  # no console yet
    console.write_text("[    1.0] virtio_net virtio0 eth0: renamed\n[    2.0] random: crng init done\n")
    assert _kernel_crash(console) is None
    console.write_text((DATA / "console-crash-after-migration.txt").read_text())
    assert _kernel_crash(console) == "[    9.065766] BUG: kernel NULL pointer dereference, address: 0000000000000020"
