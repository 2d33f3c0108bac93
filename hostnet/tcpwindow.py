"""A TCP sender's window against its bytes in flight: what bounded a TCP run.

iperf3 -J reports the sending kernel's tcp_info per interval (snd_cwnd, the
peer's advertised window snd_wnd, the smoothed RTT) and per stream at the end
(max_snd_cwnd, max_snd_wnd, min/mean/max_rtt). By Little's law the bytes in
flight are throughput x RTT. When they fill the smaller of the two windows the
flow is window-limited, and throughput is that window per RTT; when they fall
well short, the sender did not keep its window full (its application, its CPU,
or its send buffer: tcp_wmem's max caps unacknowledged plus unsent data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

WINDOW_MATCH = 0.25  # in flight within 25% of the window counts as filling it
CWND, RECEIVER_WINDOW = "cwnd", "receiver window"


@dataclass(frozen=True)
class TcpWindow:
    """One stream's (or, combined, all streams') RTT, windows and bytes in flight.

    Means are over iperf3's interval samples. Combined, windows and bytes in
    flight are sums over streams and the RTT is throughput-weighted.
    """

    bits_per_second: float  # at the receiver
    rtt_mean_ms: float
    rtt_min_ms: float
    rtt_max_ms: float
    cwnd_mean_bytes: float
    cwnd_max_bytes: int
    snd_wnd_mean_bytes: float | None  # the receiver's advertised window; None: not reported
    snd_wnd_max_bytes: int | None
    window_mean_bytes: float  # per interval the smaller of cwnd and snd_wnd, averaged
    limiting_window: str  # CWND or RECEIVER_WINDOW: the smaller one in most intervals
    in_flight_bytes: float  # bits_per_second x rtt_mean / 8
    samples: int

    @property
    def fill(self) -> float:
        """Bytes in flight as a share of the window (1.0: the window is full)."""
        return self.in_flight_bytes / self.window_mean_bytes


def stream_window(sender: dict, receiver_bps: float, intervals: list[dict]) -> TcpWindow | None:
    """One stream from its end summary and its interval samples; None without tcp_info.

    A stream the client received (iperf3 -R), or an iperf3 built without
    tcp_info, has no RTT or cwnd: there is nothing to measure the bound with.
    """
    samples = [s for s in intervals if s.get("snd_cwnd") and not s.get("omitted")]
    if not sender.get("mean_rtt") or not samples:
        return None
    cwnds = [s["snd_cwnd"] for s in samples]
    wnds = [s.get("snd_wnd") or 0 for s in samples]
    has_wnd = all(w > 0 for w in wnds)
    windows = [min(c, w) if w > 0 else c for c, w in zip(cwnds, wnds)]
    by_receiver = sum(w < c for c, w in zip(cwnds, wnds) if w > 0)
    rtt_ms = sender["mean_rtt"] / 1000
    return TcpWindow(
        bits_per_second=receiver_bps,
        rtt_mean_ms=rtt_ms,
        rtt_min_ms=sender.get("min_rtt", 0) / 1000,
        rtt_max_ms=sender.get("max_rtt", 0) / 1000,
        cwnd_mean_bytes=_mean(cwnds),
        cwnd_max_bytes=sender.get("max_snd_cwnd", max(cwnds)),
        snd_wnd_mean_bytes=_mean(wnds) if has_wnd else None,
        snd_wnd_max_bytes=sender.get("max_snd_wnd", max(wnds)) if has_wnd else None,
        window_mean_bytes=_mean(windows),
        limiting_window=RECEIVER_WINDOW if 2 * by_receiver > len(samples) else CWND,
        in_flight_bytes=receiver_bps * rtt_ms / 1000 / 8,
        samples=len(samples),
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def combine(streams: list[TcpWindow]) -> TcpWindow | None:
    """All streams as one connection-wide window (None when a stream lacks tcp_info)."""
    if not streams:
        return None
    if len(streams) == 1:
        return streams[0]
    bps = sum(s.bits_per_second for s in streams)
    in_flight = sum(s.in_flight_bytes for s in streams)
    wnd_known = all(s.snd_wnd_mean_bytes is not None for s in streams)
    limits = {s.limiting_window for s in streams}
    return replace(
        streams[0],
        bits_per_second=bps,
        rtt_mean_ms=in_flight * 8 / bps * 1000 if bps else 0.0,
        rtt_min_ms=min(s.rtt_min_ms for s in streams),
        rtt_max_ms=max(s.rtt_max_ms for s in streams),
        cwnd_mean_bytes=sum(s.cwnd_mean_bytes for s in streams),
        cwnd_max_bytes=sum(s.cwnd_max_bytes for s in streams),
        snd_wnd_mean_bytes=sum(s.snd_wnd_mean_bytes for s in streams) if wnd_known else None,
        snd_wnd_max_bytes=sum(s.snd_wnd_max_bytes for s in streams) if wnd_known else None,
        window_mean_bytes=sum(s.window_mean_bytes for s in streams),
        limiting_window=limits.pop() if len(limits) == 1 else f"{CWND} and {RECEIVER_WINDOW}",
        in_flight_bytes=in_flight,
        samples=min(s.samples for s in streams),
    )


def parse_windows(data: dict) -> tuple[list[TcpWindow], TcpWindow | None]:
    """Per-stream and combined windows from a parsed iperf3 -J report of a TCP sender."""
    intervals = [s for i in data.get("intervals", []) for s in i.get("streams", [])]
    streams = []
    for stream in data["end"].get("streams", []):
        sender, receiver = stream.get("sender") or {}, stream.get("receiver") or {}
        socket = sender.get("socket")
        window = stream_window(
            sender, float(receiver.get("bits_per_second", 0)), [s for s in intervals if s.get("socket") == socket]
        )
        if window is None:
            return [], None
        streams.append(window)
    return streams, combine(streams)


def kb(n_bytes: float) -> str:
    return f"{n_bytes / 1000:.0f} KB"


@dataclass(frozen=True)
class WindowVerdict:
    kind: str  # "window-limited", "sender-limited" or "unexplained"
    line: str  # the bound, when no host CPU ran out
    brief: str  # the numbers alone, added when a CPU limit is the bound


def window_verdict(
    window: TcpWindow, sender_cpu_percent: float | None = None, idle_rtt_ms: float | None = None
) -> WindowVerdict:
    """Window-limited, sender-limited, or not explained by the window.

    The line says which window was the smaller (cwnd: congestion control;
    receiver window: the receiver's buffer) and gives both means, so a reader
    sees how far the other one was from binding. The idle ping RTT, when given,
    shows how much of the RTT under load is data waiting in queues.
    """
    fill = window.fill
    rtt = f"{window.rtt_mean_ms:.1f} ms RTT"
    if idle_rtt_ms:
        rtt += f" vs {idle_rtt_ms:.1f} ms idle ping"
    size = f"window {kb(window.window_mean_bytes)} ({fill:.0%})"
    limit = f"{size}, set by the {window.limiting_window}, per {rtt} ({_windows(window)})"
    in_flight = f"{kb(window.in_flight_bytes)} in flight"
    brief = f"TCP: {in_flight}, {size} set by the {window.limiting_window}, per {rtt}"
    if abs(fill - 1) <= WINDOW_MATCH:
        return WindowVerdict("window-limited", f"window-limited: {in_flight} ~ {limit}", brief)
    if fill < 1 - WINDOW_MATCH:
        cpu = f"; its iperf3 used {sender_cpu_percent:.0f}% of its vCPU" if sender_cpu_percent is not None else ""
        short = (
            f"sender-limited: {in_flight}, short of the {limit}: the sender does not fill "
            f"its window (its application, CPU or send buffer){cpu}"
        )
        return WindowVerdict("sender-limited", short, brief)
    return WindowVerdict(
        "unexplained",
        f"not window-limited as sampled: {in_flight}, above the "
        f"{limit}: the tcp_info samples miss the window the flow used",
        brief,
    )


def _windows(window: TcpWindow) -> str:
    receiver = "not reported" if window.snd_wnd_mean_bytes is None else kb(window.snd_wnd_mean_bytes)
    return f"cwnd {kb(window.cwnd_mean_bytes)}, receiver window {receiver}"
