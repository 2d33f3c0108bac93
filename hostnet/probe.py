"""An ICMP echo probe, run as `python -m hostnet.probe` inside a namespace.

It timestamps every reply with the host clock (a TCG guest's clock is not one to
trust for gaps) and keeps writing a JSON summary, so the largest gap between
replies during a migration is the downtime the network saw.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"hostnet-probe".ljust(32, b".")
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def summarize(sent: dict[int, float], replies: dict[int, float], interval_s: float) -> dict:
    """Counts, RTTs and the largest gap between consecutive replies (host clock)."""
    times = sorted(replies.values())
    gaps = [b - a for a, b in zip(times, times[1:])]
    rtts = [(replies[s] - sent[s]) * 1000 for s in replies if s in sent]
    max_gap_ms = max(gaps) * 1000 if gaps else None
    return {
        "sent": len(sent),
        "received": len(replies),
        "lost": len(sent) - len(replies),
        "interval_ms": interval_s * 1000,
        "rtt_avg_ms": sum(rtts) / len(rtts) if rtts else None,
        "rtt_max_ms": max(rtts) if rtts else None,
        "max_reply_gap_ms": max_gap_ms,
        "network_downtime_ms": max(0.0, max_gap_ms - interval_s * 1000) if gaps else None,
        "last_reply_unix": times[-1] if times else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--interval-ms", type=float, default=100)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    interval = args.interval_ms / 1000
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    replies: dict[int, float] = {}
    seq, next_send, next_write = 0, time.time(), time.time()
    while not stop:
        now = time.time()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            sent[seq] = now
            try:
                sock.sendto(echo_request(ident, seq), (args.target, 0))
            except OSError:
                pass  # unreachable for a moment; counted as lost
            next_send += interval
        if now >= next_write:
            _write(args.out, summarize(sent, replies, interval))
            next_write = now + 0.2
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, next_write) - now))
        except InterruptedError:
            continue
        if ready:
            packet, _ = sock.recvfrom(2048)
            received = time.time()
            header = packet[(packet[0] & 0x0F) * 4 :][:8]
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", header)
            if kind == ICMP_ECHO_REPLY and rid == ident and rseq in sent:
                replies.setdefault(rseq, received)
    _write(args.out, summarize(sent, replies, interval))
    return 0


def _write(path: Path, summary: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
