"""An OVS-DPDK instance of our own: private run dir, own database, own namespace.

It never touches a system OVS: ovsdb-server and ovs-vswitchd-dpdk run with their
sockets, database and logs under run_dir, DPDK with --no-pci (so it cannot grab
the host's NIC), a private hugetlbfs mount and its own --file-prefix. Ports are
dpdkvhostuserclient: QEMU serves the vhost-user socket, OVS connects to it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from hostnet.errors import CommandError, OvsError
from hostnet.host import OVS_SCHEMA, OVS_VSWITCHD_DPDK
from hostnet.netns import NetworkNamespace
from hostnet.process import ManagedProcess, run

DPDK_RUNTIME_ROOT = Path("/var/run/dpdk")


@dataclass(frozen=True)
class OvsSettings:
    """The knobs that change the numbers, recorded in every result."""

    socket_mem_mb: int = 512
    pmd_cpu_mask: int = 0x2  # one PMD thread on core 1
    tso: bool = True  # userspace TSO: without it every segment is MTU-sized
    tx_flush_interval_us: int = 0  # >0 batches output across iterations (fewer guest kicks)
    # An idle PMD may sleep up to this long, handing its core back to the guests: on a
    # host without cores to spare the busy-polling PMD starves them (OVS 3.1 pmd-maxsleep).
    pmd_max_sleep_us: int = 200
    rxq_affinity: bool = True  # pin rx queue i to the i-th PMD core instead of cycle-based placement
    perf_metrics: bool = True  # pmd-perf-show's detailed histograms
    postcopy: bool = False  # vhost-postcopy-support, for postcopy live migration

    def pmd_cores(self) -> list[int]:
        return [bit for bit in range(64) if self.pmd_cpu_mask >> bit & 1]

    def rxq_affinity_for(self, n_rxq: int) -> str | None:
        """pmd-rxq-affinity value spreading n_rxq queues over the PMD cores, or None."""
        cores = self.pmd_cores()
        if not self.rxq_affinity or not cores:
            return None
        return ",".join(f"{q}:{cores[q % len(cores)]}" for q in range(n_rxq))

    def with_postcopy(self) -> OvsSettings:
        return replace(self, postcopy=True)

    def as_dict(self) -> dict:
        return {
            "socket_mem_mb": self.socket_mem_mb,
            "pmd_cpu_mask": hex(self.pmd_cpu_mask),
            "pmd_cores": self.pmd_cores(),
            "userspace_tso": self.tso,
            "tx_flush_interval_us": self.tx_flush_interval_us,
            "pmd_max_sleep_us": self.pmd_max_sleep_us,
            "rxq_affinity": self.rxq_affinity,
            "perf_metrics": self.perf_metrics,
            "vhost_postcopy_support": self.postcopy,
        }


def pmd_mask_for(queues: int, cores: int) -> int:
    """One PMD core per queue from core 1 up, leaving core 0 to the guests; at least one."""
    if cores <= 1:
        return 0x1
    count = max(1, min(queues, cores - 1))
    return sum(1 << core for core in range(1, count + 1))


def dpdk_other_config(settings: OvsSettings, huge_dir: Path, file_prefix: str) -> dict[str, str]:
    """other_config for the Open_vSwitch row, set before ovs-vswitchd starts."""
    return {
        "dpdk-init": "true",
        "dpdk-socket-mem": str(settings.socket_mem_mb),
        # OVS adds --in-memory itself: no runtime files, hugepage files unlinked.
        "dpdk-extra": f"--no-pci --huge-dir={huge_dir} --file-prefix={file_prefix}",
        "per-port-memory": "true",
        "pmd-cpu-mask": hex(settings.pmd_cpu_mask),
        "userspace-tso-enable": "true" if settings.tso else "false",
        "tx-flush-interval": str(settings.tx_flush_interval_us),
        "pmd-maxsleep": str(settings.pmd_max_sleep_us),
        "pmd-perf-metrics": "true" if settings.perf_metrics else "false",
        "vhost-postcopy-support": "true" if settings.postcopy else "false",
    }


def other_config_args(config: dict[str, str]) -> list[str]:
    return ["set", "Open_vSwitch", "."] + [f'other_config:{k}="{v}"' for k, v in config.items()]


def add_bridge_args(bridge: str) -> list[str]:
    return ["add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev"]


def vhost_user_port_args(
    bridge: str, port: str, socket_path: Path, n_rxq: int, rxq_affinity: str | None = None
) -> list[str]:
    """ovs-vsctl arguments adding a dpdkvhostuserclient port with n_rxq rx queues."""
    if n_rxq < 1:
        raise OvsError(f"n_rxq must be at least 1, got {n_rxq}")
    args = [
        "add-port",
        bridge,
        port,
        "--",
        "set",
        "Interface",
        port,
        "type=dpdkvhostuserclient",
        f"options:vhost-server-path={socket_path}",
        f"options:n_rxq={n_rxq}",
    ]
    if rxq_affinity:
        args.append(f'other_config:pmd-rxq-affinity="{rxq_affinity}"')
    return args


class OvsDpdk:
    """ovsdb-server + ovs-vswitchd-dpdk owned by this object, stopped on exit.

    :param run_dir: private directory for db, sockets, logs (short path).
    :param netns: namespace the switch runs in; its internal ports appear there.
    :param huge_dir: a hugetlbfs mount with at least settings.socket_mem_mb free.
    """

    def __init__(
        self,
        run_dir: Path,
        netns: NetworkNamespace,
        huge_dir: Path,
        settings: OvsSettings = OvsSettings(),
        file_prefix: str = "hostnet",
        on_start=None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.netns = netns
        self.huge_dir = Path(huge_dir)
        self.settings = settings
        self.file_prefix = file_prefix
        self.db_sock = self.run_dir / "db.sock"
        self.vswitchd_ctl = self.run_dir / "vswitchd.ctl"
        self._on_start = on_start
        self._ovsdb: ManagedProcess | None = None
        self._vswitchd: ManagedProcess | None = None
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "OVS_RUNDIR": str(self.run_dir),
            "OVS_DBDIR": str(self.run_dir),
            "OVS_LOGDIR": str(self.run_dir),
            "OVS_SYSCONFDIR": str(self.run_dir),
        }

    def start(self, timeout_s: float = 120) -> OvsDpdk:
        """Create the db, start both daemons, wait until DPDK reports initialized.

        Raises:
            OvsError: a daemon failed; the message names its log.
        """
        for binary in (OVS_VSWITCHD_DPDK, OVS_SCHEMA):
            if not binary.exists():
                raise OvsError(f"{binary} not found; install openvswitch-switch-dpdk (scripts/install-hostnet-deps.sh)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        db = self.run_dir / "conf.db"
        try:
            run(["ovsdb-tool", "create", db, OVS_SCHEMA], env=self.env)
            self._ovsdb = self._start_daemon(
                "ovsdb-server",
                [
                    "ovsdb-server",
                    db,
                    f"--remote=punix:{self.db_sock}",
                    f"--unixctl={self.run_dir / 'ovsdb.ctl'}",
                    "--log-file=" + str(self.run_dir / "ovsdb-server.log"),
                ],
            )
            self.vsctl("--no-wait", "init", retry_timeout_s=timeout_s)
            config = dpdk_other_config(self.settings, self.huge_dir, self.file_prefix)
            self.vsctl("--no-wait", *other_config_args(config))
            self._vswitchd = self._start_daemon(
                "ovs-vswitchd",
                self.netns.exec_argv(
                    [
                        OVS_VSWITCHD_DPDK,
                        f"unix:{self.db_sock}",
                        f"--unixctl={self.vswitchd_ctl}",
                        "--log-file=" + str(self.run_dir / "ovs-vswitchd.log"),
                    ]
                ),
            )
            self.vsctl(
                f"--timeout={int(timeout_s)}",
                "wait-until",
                "Open_vSwitch",
                ".",
                "dpdk_initialized=true",
                timeout_s=timeout_s + 10,
            )
        except CommandError as exc:
            failure = OvsError(
                f"OVS-DPDK failed to start in {self.run_dir}: {exc}; vswitchd log: {self._vswitchd_log_tail()}"
            )
            self.stop()
            raise failure from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemon(self, name: str, argv: list) -> ManagedProcess:
        proc = ManagedProcess(argv, name=name, log_path=self.run_dir / f"{name}.out", env=self.env).start()
        if self._on_start:
            self._on_start(proc)
        return proc

    def _vswitchd_log_tail(self) -> str:
        log = self.run_dir / "ovs-vswitchd.log"
        return log.read_text(errors="replace")[-800:] if log.exists() else "(none)"

    def vsctl(self, *args: str, timeout_s: float = 60, retry_timeout_s: float | None = None) -> str:
        """Run ovs-vsctl against this instance's database."""
        argv = ["ovs-vsctl", f"--db=unix:{self.db_sock}"]
        if retry_timeout_s is not None:
            argv += ["--retry", f"--timeout={int(retry_timeout_s)}"]
            timeout_s = retry_timeout_s + 10
        return run(argv + list(args), env=self.env, timeout_s=timeout_s).stdout.strip()

    def appctl(self, *args: str) -> str:
        return run(["ovs-appctl", "-t", self.vswitchd_ctl, *args], env=self.env).stdout

    def add_bridge(self, bridge: str) -> None:
        self.vsctl(*add_bridge_args(bridge))

    def add_vhost_user_port(self, bridge: str, port: str, socket_path: Path, n_rxq: int = 1) -> None:
        self.vsctl(*vhost_user_port_args(bridge, port, socket_path, n_rxq, self.settings.rxq_affinity_for(n_rxq)))

    def delete_port(self, bridge: str, port: str) -> None:
        self.vsctl("--if-exists", "del-port", bridge, port)

    def clear_pmd_stats(self) -> None:
        self.appctl("dpif-netdev/pmd-stats-clear")

    def pmd_stats(self) -> tuple[str, str]:
        """(pmd-stats-show, pmd-perf-show) since the last clear_pmd_stats()."""
        return self.appctl("dpif-netdev/pmd-stats-show"), self.appctl("dpif-netdev/pmd-perf-show")

    @property
    def vswitchd_pid(self) -> int | None:
        return self._vswitchd.pid if self._vswitchd else None

    def running(self) -> bool:
        return bool(self._vswitchd and self._vswitchd.running())

    def stop(self) -> None:
        """Stop vswitchd then ovsdb-server, and remove DPDK's runtime dir; idempotent."""
        if self._vswitchd is not None:
            self._vswitchd.stop(timeout_s=20)
            self._vswitchd = None
        if self._ovsdb is not None:
            self._ovsdb.stop()
            self._ovsdb = None
        shutil.rmtree(DPDK_RUNTIME_ROOT / self.file_prefix, ignore_errors=True)

    def __enter__(self) -> OvsDpdk:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
