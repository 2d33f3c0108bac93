"""Undoes a lab whose owner ended without cleaning up: SIGKILL, the OOM killer, a runner killing the job.

The lab starts this in its own session, so a kill aimed at the owner's process group misses
it. It waits on the owner's pidfd; if the lab's state file is still there when the owner has
ended, it does what `deployer hostnet down` does, for that lab only. A lab that stops
cleanly removes its state file and then stops this process.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
from pathlib import Path

from hostnet.cleanup import clean_run


def wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    select.select([fd], [], [])
    os.close(fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    opts = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wait_for_exit(opts.owner_pid)
    if (opts.run_dir / "state.json").exists():
        for line in clean_run(opts.run_dir):
            print(f"watchdog: {line}", flush=True)


if __name__ == "__main__":
    main()
