"""OVS-DPDK's own view of a run: `dpif-netdev/pmd-stats-show` and `pmd-perf-show`.

The PMD thread always shows 100 % host CPU (it busy-polls); only its split of
cycles into processing and idle says whether it was the bound. Stats are cleared
before a measurement, so the numbers cover that measurement alone.
"""

from __future__ import annotations

import re

PMD_BOUND_PERCENT = 90.0
_HEADER = re.compile(r"^(pmd thread numa_id \d+ core_id \d+|main thread):\s*$")
_LINE = re.compile(r"^\s+([^:]+):\s*([\d.]+)(?:\s*\(([\d.]+)%\))?")


def parse_pmd_stats(text: str) -> dict[str, dict[str, float]]:
    """pmd-stats-show -> {thread: {stat: value}}; cycle stats also get '<stat> %'."""
    threads: dict[str, dict[str, float]] = {}
    current = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = threads.setdefault(header.group(1), {})
            continue
        match = _LINE.match(line)
        if match and current is not None:
            value = float(match.group(2))
            current[match.group(1).strip()] = int(value) if value.is_integer() else value
            if match.group(3) is not None:
                current[f"{match.group(1).strip()} %"] = float(match.group(3))
    return threads


def pmd_summary(stats: dict[str, dict[str, float]], seconds: float) -> dict:
    """Packets per second and processing share per PMD thread, and whether one was the bound."""
    pmds = {}
    for name, values in stats.items():
        if not name.startswith("pmd"):
            continue
        packets = values.get("packets received", 0)
        pmds[name] = {
            "packets_received": packets,
            "pps": round(packets / seconds) if seconds > 0 else None,
            "processing_cycles_percent": values.get("processing cycles %"),
            "avg_processing_cycles_per_packet": values.get("avg processing cycles per packet"),
            "avg_packets_per_output_batch": values.get("avg. packets per output batch"),
        }
    busiest = max((p["processing_cycles_percent"] or 0 for p in pmds.values()), default=0)
    return {"pmds": pmds, "busiest_processing_percent": busiest, "pmd_bound": busiest >= PMD_BOUND_PERCENT}


def parse_perf_show(text: str) -> dict[str, float]:
    """The headline numbers of pmd-perf-show (iterations, cycles, packets per batch)."""
    wanted = {
        "Iterations",
        "- Used TSC cycles",
        "- idle iterations",
        "- busy iterations",
        "Rx packets",
        "- Used TSC cycles per packet",
        "- Upcalls",
        "Tx packets",
        "- Rx batches",
        "- Tx batches",
        "- packets per Rx batch",
        "- packets per Tx batch",
        "Datapath passes",
        "- Used TSC cycles per iteration",
    }
    found = {}
    for line in text.splitlines():
        key, sep, rest = line.strip().partition(":")
        if sep and key.strip() in wanted:
            number = re.match(r"\s*([\d.]+)", rest)
            if number:
                found[key.strip().lstrip("- ")] = float(number.group(1))
    return found
