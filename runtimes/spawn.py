"""Child processes that must die with this one, all forked by one thread that lives as long as it does.

PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. A container or
launcher started from an HTTP connection's thread (which ends when its client hangs up) would be killed
mid-activation. So every child set up with it is started here, from a single long-lived thread.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_spawner: ThreadPoolExecutor | None = None


def popen(*args, **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(*args, **kwargs)`, forked by the spawner thread; raises what Popen raises."""
    global _spawner
    with _lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
    return _spawner.submit(subprocess.Popen, *args, **kwargs).result()
