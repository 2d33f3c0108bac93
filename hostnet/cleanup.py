"""Undo what a lab left behind when its process died without cleaning up.

Each lab records its pids, namespaces and hugepage state in RUN_ROOT/<id>/state.json;
only what is recorded there (and namespaces named hn-*) is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from hostnet.hugepages import NR_HUGEPAGES
from hostnet.lab import RUN_ROOT
from hostnet.netns import NETNS_DIR, list_hostnet_namespaces
from hostnet.process import pid_alive, run


def _namespace_ids(names: list[str]) -> set[int]:
    ids = set()
    for name in names:
        try:
            ids.add((NETNS_DIR / name).stat().st_ino)
        except OSError:
            pass
    return ids


def _owned(pid: int, run_dir: Path, lab_id: str, namespaces: set[int]) -> bool:
    """True if the pid's command line names this lab or it lives in one of the lab's namespaces.

    Never a stranger's process. The namespace test finds what `ip netns exec` started
    (iperf3 beyond the NAT): exec leaves no trace of the lab in its command line.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        netns = Path(f"/proc/{pid}/ns/net").stat().st_ino
    except OSError:
        return False
    return str(run_dir) in cmdline or f"hn-{lab_id}-" in cmdline or netns in namespaces


def clean_run(run_dir: Path) -> list[str]:
    """Undo one lab from its state file: stop its processes, delete its namespaces, give back hugepages."""
    try:
        state = json.loads((Path(run_dir) / "state.json").read_text())
    except (OSError, ValueError):
        return []
    done = []
    namespaces = _namespace_ids(state.get("namespaces", []))
    lab_id = state.get("lab_id", "")
    pids = [p for p in state.get("pids", []) if pid_alive(p) and _owned(p, run_dir, lab_id, namespaces)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for processes we signalled to exit
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        done.append(f"stopped pid {pid}")
    mount = state.get("hugepage_mount")
    if mount and os.path.ismount(mount):
        run(["umount", mount], check=False)
        done.append(f"unmounted {mount}")
    if state.get("nr_hugepages_before") is not None:
        NR_HUGEPAGES.write_text(str(state["nr_hugepages_before"]))
        done.append(f"nr_hugepages restored to {state['nr_hugepages_before']}")
    present = set(list_hostnet_namespaces())
    for name in state.get("namespaces", []):
        if name in present:
            run(["ip", "netns", "delete", name], check=False)
            done.append(f"deleted namespace {name}")
    shutil.rmtree(run_dir, ignore_errors=True)
    done.append(f"removed {run_dir}")
    return done


def clean_leftovers(run_root: Path = RUN_ROOT) -> list[str]:
    """Every lab under run_root, then any hn-* namespace no state file named."""
    done = []
    for state_file in sorted(Path(run_root).glob("*/state.json")):
        done += clean_run(state_file.parent)
    for name in list_hostnet_namespaces():
        run(["ip", "netns", "delete", name], check=False)
        done.append(f"deleted namespace {name}")
    return done
