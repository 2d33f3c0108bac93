"""One QEMU guest: configure, launch, wait until ready, drive, shut down.

The command line is assembled in one place, VM._argv(). QMP goes through the
qemu.qmp library; hostnet listens and QEMU connects, so the greeting is the
readiness signal. shutdown() is idempotent and always runs on __exit__.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from hostnet.errors import VMError
from hostnet.host import QEMU_BINARY
from hostnet.image import ERROR_MARKER, READY_MARKER, GuestImage
from hostnet.netns import NetworkNamespace
from hostnet.process import ManagedProcess

BACKEND_TAP = "tap"
BACKEND_VHOST_USER = "vhost-user"


@dataclass(frozen=True)
class NicSpec:
    """One virtio-net NIC and the host side it plugs into."""

    backend: str  # BACKEND_TAP or BACKEND_VHOST_USER
    netdev_id: str
    mac: str
    queues: int = 1
    ifname: str | None = None  # tap device, for BACKEND_TAP
    socket_path: Path | None = None  # vhost-user socket QEMU serves, for BACKEND_VHOST_USER
    vhost_net: bool = False  # tap only: in-kernel vhost-net datapath
    rx_queue_size: int | None = None  # virtqueue ring entries; None: QEMU's 256
    tx_queue_size: int | None = None  # above 256 only vhost-user honours it
    mrg_rxbuf: bool | None = None  # mergeable rx buffers; None: QEMU's default (on)


# Measured (TCG, 256 MB guests, 1 queue, 8 s, quiet host): the kernel's 1.5 MB gave tap
# 2214-2487 Mbit/s and vhost-user 2612-3154; 16 MiB gave 3918-4045 and 3380-3599.
DEFAULT_TCP_BUFFER_MAX = 16 << 20


@dataclass(frozen=True)
class GuestTuning:
    """Guest-side settings given to both backends alike, so the comparison stays fair."""

    # TCG: qemu64 measured 2.3x faster than max for guest-to-guest TCP (max makes the
    # guest kernel pick instructions TCG emulates slowly); KVM uses the host model.
    cpu_model: str = "qemu64"
    # 1024-entry rings (QEMU's default is 256): with 16 MiB TCP buffers vhost-user measured
    # 3981-4264 Mbit/s against 3099-3599 with 256 (tap 4178-4326 against 3918-4045). QEMU
    # clamps tap's tx ring to 256 whatever is asked.
    rx_queue_size: int | None = 1024
    tx_queue_size: int | None = 1024
    mrg_rxbuf: bool | None = None
    pin_vcpus: bool = False  # each vCPU thread on its own host core, away from the PMD
    # Max of tcp_rmem/tcp_wmem and net.core.rmem_max/wmem_max, in bytes; None: the
    # kernel's, which it sizes from guest memory (1.5 MB at 256 MB). A receiver
    # advertises at most half its tcp_rmem max, and that window bounds TCP per RTT.
    tcp_buffer_max: int | None = DEFAULT_TCP_BUFFER_MAX

    def as_dict(self) -> dict:
        return {
            "cpu_model": self.cpu_model,
            "rx_queue_size": self.rx_queue_size or 256,
            "tx_queue_size": self.tx_queue_size or 256,
            "mrg_rxbuf": True if self.mrg_rxbuf is None else self.mrg_rxbuf,
            "pin_vcpus": self.pin_vcpus,
            "tcp_buffer_max": self.tcp_buffer_max or "kernel default",
        }


def nic_vectors(nic: NicSpec, accel: str) -> int | None:
    """MSI-X vectors for a NIC; None leaves QEMU's default.

    QEMU 7.2 under TCG crashes in msix_set_vector_notifiers when vhost-user uses
    MSI-X, so there we use legacy INTx (vectors=0).
    """
    if nic.backend == BACKEND_VHOST_USER and accel == "tcg":
        return 0
    if nic.queues > 1:
        return 2 * nic.queues + 2
    return None


def nic_args(nic: NicSpec, accel: str) -> list[str]:
    """-chardev/-netdev/-device arguments for one NIC."""
    args = []
    if nic.backend == BACKEND_TAP:
        netdev = (
            f"tap,id={nic.netdev_id},ifname={nic.ifname},script=no,downscript=no,"
            f"vhost={'on' if nic.vhost_net else 'off'}"
        )
    elif nic.backend == BACKEND_VHOST_USER:
        chardev = f"chr-{nic.netdev_id}"
        args += ["-chardev", f"socket,id={chardev},path={nic.socket_path},server=on"]
        netdev = f"vhost-user,id={nic.netdev_id},chardev={chardev}"
    else:
        raise VMError(f"unknown NIC backend {nic.backend!r}; use tap or vhost-user")
    if nic.queues > 1:
        netdev += f",queues={nic.queues}"
    device = f"virtio-net-pci,netdev={nic.netdev_id},mac={nic.mac}"
    if nic.queues > 1:
        device += ",mq=on"
    vectors = nic_vectors(nic, accel)
    if vectors is not None:
        device += f",vectors={vectors}"
    if nic.rx_queue_size:
        device += f",rx_queue_size={nic.rx_queue_size}"
    if nic.tx_queue_size:
        device += f",tx_queue_size={nic.tx_queue_size}"
    if nic.mrg_rxbuf is not None:
        device += f",mrg_rxbuf={'on' if nic.mrg_rxbuf else 'off'}"
    return args + ["-netdev", netdev, "-device", device]


@dataclass
class VMConfig:
    """What a guest is: image, size, NICs, how it configures itself."""

    name: str
    image: GuestImage
    accel: str = "tcg"
    cpu_model: str = "qemu64"  # TCG only; KVM uses the host model
    vcpus: int = 1
    memory_mb: int = 256
    nics: list[NicSpec] = field(default_factory=list)
    guest_ip: str | None = None  # CIDR, e.g. 10.66.0.10/24
    gateway: str | None = None
    hugepage_dir: Path | None = None  # shared memory, required by vhost-user
    incoming: bool = False  # wait for a migration (-incoming defer)
    tcp_buffer_max: int | None = None  # GuestTuning.tcp_buffer_max; hostnet image only


class VM:
    """A QEMU guest owned by this object; shutdown() on exit and on error.

    :param config: the guest to run.
    :param run_dir: where sockets and logs go (short path: unix sockets cap at 108 bytes).
    :param netns: the namespace QEMU runs in (its taps live there), or None.
    """

    def __init__(self, config: VMConfig, run_dir: Path, netns: NetworkNamespace | None = None, on_start=None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.netns = netns
        self._on_start = on_start
        self.qmp_path = self.run_dir / f"{config.name}.qmp"
        self.serial_path = self.run_dir / f"{config.name}.ctl"
        self.serial_log = self.run_dir / f"{config.name}.console.log"
        self.control_log = self.run_dir / f"{config.name}.control.log"
        self.qemu_log = self.run_dir / f"{config.name}.qemu.log"
        self._process: ManagedProcess | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self.serial = None

    @property
    def name(self) -> str:
        return self.config.name

    def kernel_cmdline(self) -> str:
        cfg = self.config
        parts = [
            "console=ttyS0",
            "loglevel=1",
            "panic=-1",
            "mitigations=off",
            f"hostnet.name={cfg.name}",
            f"hostnet.queues={max(n.queues for n in cfg.nics) if cfg.nics else 1}",
        ]
        if cfg.guest_ip:
            parts.append(f"hostnet.ip={cfg.guest_ip}")
        if cfg.gateway:
            parts.append(f"hostnet.gw={cfg.gateway}")
        if cfg.tcp_buffer_max:
            parts.append(f"hostnet.tcp_buffer_max={cfg.tcp_buffer_max}")
        return " ".join(parts)

    def _argv(self) -> list[str]:
        """The whole QEMU command line, built here and nowhere else."""
        cfg = self.config
        argv = self._machine_args() + self._channel_args() + self._memory_args() + self._boot_args()
        for nic in cfg.nics:
            argv += nic_args(nic, cfg.accel)
        if cfg.incoming:
            argv += ["-incoming", "defer"]
        return argv

    def _machine_args(self) -> list[str]:
        """The emulated machine: CPU, size, and no default devices or display."""
        cfg = self.config
        return [
            QEMU_BINARY,
            "-name",
            f"{cfg.name},debug-threads=on",
            "-machine",
            "pc",
            "-accel",
            cfg.accel,
            "-cpu",
            "host" if cfg.accel == "kvm" else cfg.cpu_model,
            "-smp",
            str(cfg.vcpus),
            "-m",
            f"{cfg.memory_mb}M",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
            "-no-reboot",
        ]

    def _channel_args(self) -> list[str]:
        """QMP, the kernel console log and the control shell, each on its own socket or file."""
        return [
            "-chardev",
            f"socket,id=qmp0,path={self.qmp_path},server=off",
            "-mon",
            "chardev=qmp0,mode=control",
            "-chardev",
            f"file,id=serial0,path={self.serial_log}",
            "-serial",
            "chardev:serial0",
            # The control shell: a virtio console, reliable where the UART drops input.
            "-device",
            "virtio-serial-pci,id=vser0",
            "-chardev",
            f"socket,id=ctl0,path={self.serial_path},server=off,logfile={self.control_log},logappend=on",
            "-device",
            "virtconsole,chardev=ctl0,id=ctl0",
        ]

    def _memory_args(self) -> list[str]:
        """Guest RAM in shared hugepages when vhost-user needs it; QEMU's own otherwise."""
        cfg = self.config
        if cfg.hugepage_dir is None:
            return []
        return [
            "-object",
            f"memory-backend-file,id=mem0,size={cfg.memory_mb}M,mem-path={cfg.hugepage_dir},share=on,prealloc=off",
            "-numa",
            "node,memdev=mem0",
        ]

    def _boot_args(self) -> list[str]:
        """Direct kernel boot for a hostnet image (so init reads its settings), else the disk."""
        cfg = self.config
        if cfg.image.controllable:
            return [
                "-kernel",
                str(cfg.image.kernel),
                "-initrd",
                str(cfg.image.initrd),
                "-append",
                self.kernel_cmdline(),
            ]
        if cfg.image.disk is not None:
            return ["-drive", f"file={cfg.image.disk},if=virtio,snapshot=on"]
        return []

    def command_line(self) -> str:
        return shlex.join(self._argv())

    def launch(self, timeout_s: float = 120) -> VM:
        """Start QEMU and connect serial and QMP (QMP greeting = QEMU is up).

        Raises:
            VMError: QEMU exited or did not connect; the message has the command and log.
        """
        from hostnet.serial import SerialConsole  # keeps the module import light for unit tests

        if self._process is not None:
            raise VMError(f"VM {self.name} already launched")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        argv = self._argv()
        if self.netns is not None:
            argv = self.netns.exec_argv(argv)
        self.serial = SerialConsole(self.serial_path)
        self._qmp = QEMUMonitorProtocol(str(self.qmp_path), server=True)
        self._process = ManagedProcess(argv, name=f"qemu {self.name}", log_path=self.qemu_log)
        try:
            self._process.start()
            if self._on_start:
                self._on_start(self._process)
            self.serial.accept(timeout_s, self._process.running)
            self._qmp.accept(timeout=timeout_s)
            self._qmp.settimeout(60)
        except (VMError, QMPError, OSError, EOFError, TimeoutError) as exc:
            failure = self._failure(f"launch of {self.name} failed: {exc}")
            self.shutdown()
            raise failure from exc
        except BaseException:
            self.shutdown()
            raise
        return self

    def _failure(self, what: str) -> VMError:
        rc = self._process.wait(2) if self._process else None
        state = f"qemu exited {rc}" if rc is not None else "qemu still running"
        return VMError(
            f"{what}; {state}; command: {self.command_line()}; log: {self.qemu_log}: "
            f"{self._process.log_tail(800) if self._process else ''}"
        )

    def wait_ready(self, timeout_s: float = 180) -> VM:
        """Wait until the guest's init has configured the network and offers a shell.

        Raises:
            VMError: QEMU died, init reported an error, or the marker did not come.
        """
        if self.serial is None:
            raise VMError(f"VM {self.name} is not launched")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                match = self.serial.wait_for(
                    f"{READY_MARKER}|{ERROR_MARKER}[^\n]*\n", timeout_s=min(5.0, max(0.1, deadline - time.monotonic()))
                )
                break
            except VMError as exc:
                if not self._process.running():
                    raise self._failure(f"{self.name} died while booting; {self._console_tail()}") from exc
                if time.monotonic() >= deadline:
                    raise self._failure(f"{self.name} not ready in {timeout_s}s; {self._console_tail()}") from exc
        if match.group(0).startswith(ERROR_MARKER):
            raise VMError(f"guest {self.name} init failed: {match.group(0).strip()}; {self._console_tail()}")
        return self

    def _console_tail(self) -> str:
        try:
            kernel = self.serial_log.read_text(errors="replace")[-500:]
        except OSError:
            kernel = ""
        control = self.serial.text[-300:] if self.serial else ""
        return f"kernel console {self.serial_log}: {kernel!r}; control channel: {control!r}"

    def run(self, command: str, timeout_s: float = 60, check: bool = True) -> str:
        """Run a command in the guest shell and return its output.

        Raises:
            VMError: it exited non-zero (with check) or did not finish in time.
        """
        if self.serial is None:
            raise VMError(f"VM {self.name} is not launched")
        rc, output = self.serial.run(command, timeout_s)
        if check and rc != 0:
            raise VMError(f"guest {self.name}: {command!r} exited {rc}: {output[-800:]}")
        return output

    def qmp(self, command: str, **arguments) -> object:
        """Run a QMP command and return its 'return' value.

        Raises:
            VMError: QMP answered with an error or the connection failed.
        """
        if self._qmp is None:
            raise VMError(f"VM {self.name} is not launched")
        try:
            response = self._qmp.cmd_raw(command, arguments or None)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:
            raise VMError(f"QMP {command} on {self.name} failed: {exc}") from exc
        if "error" in response:
            raise VMError(
                f"QMP {command} {arguments} on {self.name}: {response['error'].get('desc', response['error'])}"
            )
        return response.get("return")

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def vcpu_threads(self) -> list[int]:
        """Host thread ids of the vCPUs, in vCPU order."""
        cpus = self.qmp("query-cpus-fast") or []
        return [c["thread-id"] for c in sorted(cpus, key=lambda c: c["cpu-index"])]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def shutdown(self, timeout_s: float = 15) -> None:
        """Stop QEMU (QMP quit, then terminate, then kill) and close channels; idempotent."""
        try:
            if self._process is not None and self._process.running() and self._qmp is not None:
                try:
                    self._qmp.cmd_raw("quit")
                except (QMPError, OSError, EOFError):
                    pass
                self._process.wait(timeout_s)
        finally:
            if self._process is not None:
                self._process.stop(timeout_s)
            if self._qmp is not None:
                try:
                    self._qmp.close()
                except (QMPError, OSError, EOFError):
                    pass
                self._qmp = None
            if self.serial is not None:
                self.serial.close()
                self.serial = None
            self.qmp_path.unlink(missing_ok=True)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
