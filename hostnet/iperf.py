"""iperf3: its -J report parsed into a dataclass, and a host-side server owner.

Throughput is read at the receiver (sum_received), so UDP loss is not counted as
throughput. A TCP sender's RTT and windows (tcp_info) come along, so the bound
can be measured rather than inferred (hostnet.tcpwindow).
"""

from __future__ import annotations

import json
import select
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hostnet.errors import IperfError
from hostnet.netns import NetworkNamespace
from hostnet.process import ManagedProcess
from hostnet.tcpwindow import TcpWindow, parse_windows


@dataclass(frozen=True)
class IperfResult:
    protocol: str  # "TCP" or "UDP"
    duration_s: float
    streams: int
    bits_per_second: float  # at the receiver
    sender_bits_per_second: float
    retransmits: int | None = None  # TCP
    lost_percent: float | None = None  # UDP
    jitter_ms: float | None = None  # UDP
    packets: int | None = None  # UDP, sent
    lost_packets: int | None = None  # UDP
    sender_cpu_percent: float | None = None  # iperf3's own CPU in the sending guest
    receiver_cpu_percent: float | None = None
    tcp_window: TcpWindow | None = None  # TCP sender: RTT, cwnd, receiver window, in flight
    tcp_streams: tuple[TcpWindow, ...] = ()  # the same per stream

    @property
    def mbps(self) -> float:
        return self.bits_per_second / 1e6

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mbps"] = round(self.mbps, 1)
        if self.tcp_window is not None:
            data["tcp_window"]["fill"] = round(self.tcp_window.fill, 3)
        return data


def extract_json(text: str) -> str:
    """The JSON object in text that may carry console noise before or after it."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise IperfError(f"no JSON object in iperf3 output: {text[-400:]!r}")
    return text[start : end + 1]


def parse_iperf_json(text: str) -> IperfResult:
    """Parse `iperf3 -c ... -J` output.

    Raises:
        IperfError: the JSON is malformed, reports an error, or lacks the summary.
    """
    try:
        data = json.loads(extract_json(text))
    except json.JSONDecodeError as exc:
        raise IperfError(f"iperf3 output is not JSON ({exc}): {text[-400:]!r}") from exc
    if data.get("error"):
        raise IperfError(f"iperf3 reported: {data['error']}")
    try:
        test = data["start"]["test_start"]
        end = data["end"]
        protocol = test["protocol"]
        sent, received = end["sum_sent"], end["sum_received"]
        common = dict(
            protocol=protocol,
            duration_s=float(test["duration"]),
            streams=int(test["num_streams"]),
            bits_per_second=float(received["bits_per_second"]),
            sender_bits_per_second=float(sent["bits_per_second"]),
        )
        cpu = end.get("cpu_utilization_percent") or {}
        common.update(sender_cpu_percent=cpu.get("host_total"), receiver_cpu_percent=cpu.get("remote_total"))
        if protocol == "UDP":
            summary = end.get("sum", received)
            return IperfResult(
                **common,
                lost_percent=float(summary["lost_percent"]),
                jitter_ms=float(summary["jitter_ms"]),
                packets=summary.get("packets"),
                lost_packets=summary.get("lost_packets"),
            )
        streams, window = parse_windows(data)
        return IperfResult(**common, retransmits=sent.get("retransmits"), tcp_window=window, tcp_streams=tuple(streams))
    except (KeyError, TypeError, ValueError) as exc:
        raise IperfError(f"iperf3 JSON lacks {exc} in its summary") from exc


def client_command(
    server_ip: str,
    *,
    seconds: float,
    streams: int = 1,
    udp: bool = False,
    udp_bitrate: str = "1G",
    port: int = 5201,
    length: int | None = None,
    interval_s: float = 0.5,
) -> str:
    """The iperf3 client command line, as run inside a guest.

    interval_s is also how often iperf3 samples tcp_info (RTT, cwnd, receiver
    window): the receiver window swings widely, so a mean needs more samples than 1 s gives.
    """
    if seconds <= 0 or streams < 1:
        raise IperfError(f"iperf3 needs seconds > 0 and streams >= 1, got {seconds}, {streams}")
    cmd = f"iperf3 -c {server_ip} -p {port} -t {seconds:g} -i {interval_s:g} -P {streams} -J"
    if udp:
        cmd += f" -u -b {udp_bitrate}"
    if length:
        cmd += f" -l {length}"
    return cmd


class IperfServer:
    """iperf3 -s on a host address (loopback or inside a namespace), stopped on exit."""

    def __init__(
        self, bind: str, port: int, log_dir: Path, netns: NetworkNamespace | None = None, on_start=None
    ) -> None:
        self.bind, self.port = bind, port
        argv = ["iperf3", "-s", "-B", bind, "-p", str(port), "--forceflush"]
        if netns is not None:
            argv = netns.exec_argv(argv)
        self._process = ManagedProcess(
            argv,
            name=f"iperf3 server {bind}:{port}",
            log_path=Path(log_dir) / f"iperf3-{bind}-{port}.log",
            stdout_pipe=True,
        )
        self._on_start = on_start

    def start(self, timeout_s: float = 30) -> IperfServer:
        """Start and wait for 'Server listening'.

        Raises:
            IperfError: it exited or did not listen within timeout_s.
        """
        self._process.start()
        if self._on_start:
            self._on_start(self._process)
        deadline = time.monotonic() + timeout_s
        seen = b""
        stdout = self._process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                chunk = stdout.read1(4096)
                seen += chunk
                if b"Server listening" in seen:
                    # Keep draining, or iperf3 blocks once the pipe fills.
                    threading.Thread(target=self._drain, args=(stdout,), daemon=True).start()
                    return self
                if not chunk:
                    break
            elif not self._process.running():
                break
        self._process.stop()
        raise IperfError(
            f"iperf3 server on {self.bind}:{self.port} did not start; output: "
            f"{seen.decode(errors='replace')[-300:]} {self._process.log_tail(300)}; "
            f"{self._process.describe()}"
        )

    @staticmethod
    def _drain(stdout) -> None:
        try:
            while stdout.read1(65536):
                pass
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> IperfServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
