"""Child processes, owned: started, waited on until ready, stopped; dying with their owner or watching it.

What of ours starts a process uses this package: the local platform's supervisor, its
containers and its embedded S3 owner, the runtime proxy's launchers, FedAvg's process workers
and the runtime image build's wheelhouse server (hostnet keeps its own: it stands alone). It
imports nothing of ours, so every package may import it; it runs inside the runtime image
beside the proxy, so it stays standard library only.

- `Child` (child.py): spawn, wait for a readiness sign (`ReadyLine`, `PortAccepts`, `ReadyWhen`),
  stop (SIGTERM, grace, SIGKILL), kill (the tree too); a context manager.
- `popen(..., die_with_parent=True)`, `die_with_parent`, `watch_owner`, `start_ticks`, `become_subreaper` (owner.py).
- `descendants`, `kill_tree`, `gone`, `wait_gone`, `stop_process` (tree.py): process trees through /proc.
- `stat_fields`, `cpu_s` (stat.py): one process's /proc/<pid>/stat.
"""

from .child import READY_FD, Child, PortAccepts, Ready, ReadyLine, ReadyWhen, wait_ready
from .errors import NotReady, ProcsError
from .owner import become_subreaper, die_with_parent, popen, start_ticks, watch_owner
from .stat import cpu_s, stat_fields
from .tree import descendants, gone, kill_tree, stop_process, wait_gone

__all__ = [
    "READY_FD",
    "Child",
    "NotReady",
    "PortAccepts",
    "ProcsError",
    "Ready",
    "ReadyLine",
    "ReadyWhen",
    "become_subreaper",
    "cpu_s",
    "descendants",
    "die_with_parent",
    "gone",
    "kill_tree",
    "popen",
    "stat_fields",
    "stop_process",
    "wait_gone",
    "wait_ready",
    "start_ticks",
    "watch_owner",
]
