"""Byte counts in the words people read them in: "2 MB", not "2097152 bytes".

Messages about sizes reach people (the page shows the action's errors), so they say
"8.2 MB, more than the limit of 8 MB". Multiples are of 1024, labelled KB/MB/GB as file
managers and browsers label them; where rounding would make a size and its limit read
the same, the exact byte counts are added, so the message never says "8 MB is more
than 8 MB".
"""

from __future__ import annotations

UNITS = ("KB", "MB", "GB", "TB")


def human_bytes(n: int, exact: bool = False) -> str:
    """512 -> "512 bytes", 1536 -> "1.5 KB", 200000 -> "195 KB", 2097152 -> "2 MB"; `exact` adds "(N bytes)"."""
    n = int(n)
    if abs(n) < 1024:
        return f"{n} byte" + ("" if n == 1 else "s")
    value, unit = float(n), "bytes"
    for unit in UNITS:
        value /= 1024.0
        if abs(value) < 1023.5 or unit == UNITS[-1]:
            break
    # three significant digits at most, no trailing ".0": 1.5 KB, 19.5 KB, 195 KB
    text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    shown = f"{text} {unit}"
    return f"{shown} ({n} bytes)" if exact else shown


def over_limit(size: int, limit: int) -> str:
    """`<size>, more than the limit of <limit>`, in exact bytes where the rounded forms would read the same."""
    shown, most = human_bytes(size), human_bytes(limit)
    if shown == most:
        shown, most = human_bytes(size, exact=True), human_bytes(limit, exact=True)
    return f"{shown}, more than the limit of {most}"
