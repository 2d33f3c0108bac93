"""A lab: namespaces, a switch for one backend, NAT to a 'beyond' namespace, guests.

    hn-<id>-lan  guests' switch (Linux bridge + taps, or OVS-DPDK + vhost-user),
                 gateway 10.66.0.1, QEMU processes, NAT out of veth `up0`
    hn-<id>-wan  "the network beyond the host": 10.77.0.2 with an iperf3 server

Guests get 10.66.0.<10+index>/24. Nothing is routed to the host's interfaces.
The lab owns everything it starts and tears it all down on exit, in reverse order.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from hostnet.errors import HostnetError, MissingComponentError
from hostnet.host import host_cores, missing_components, vhost_net_available
from hostnet.hugepages import HugepageReservation
from hostnet.image import GuestImage
from hostnet.iperf import IperfServer
from hostnet.netns import NetworkNamespace, add_bridge, add_tap, add_veth_pair, delete_link, enable_nat
from hostnet.ovs import OvsDpdk, OvsSettings
from hostnet.vm import BACKEND_TAP, BACKEND_VHOST_USER, VM, GuestTuning, NicSpec, VMConfig

RUN_ROOT = Path(os.environ.get("HOSTNET_RUN_ROOT", "/run/hostnet"))
BACKENDS = {"virtio-net": BACKEND_TAP, "vhost-user": BACKEND_VHOST_USER}
LAN_PREFIX = "10.66.0"
GATEWAY_IP = f"{LAN_PREFIX}.1"
LAN_SUBNET = f"{LAN_PREFIX}.0/24"
UPLINK_LAN_IP, BEYOND_IP = "10.77.0.1", "10.77.0.2"
BEYOND_IPERF_PORT = 5201
OVS_BRIDGE = "br-lab"
LINUX_BRIDGE = "br0"


def guest_ip(index: int) -> str:
    return f"{LAN_PREFIX}.{10 + index}"


def guest_mac(index: int) -> str:
    return f"52:54:00:66:00:{10 + index:02x}"


@dataclass(frozen=True)
class LabSettings:
    """What the lab is built from; recorded in results."""

    backend: str  # "virtio-net" or "vhost-user"
    image: GuestImage
    accel: str = "tcg"
    memory_mb: int = 256
    max_guests: int = 2  # sizes the hugepage reservation (vhost-user)
    ovs: OvsSettings = OvsSettings()
    guest: GuestTuning = GuestTuning()


def guest_cores(backend: str, ovs: OvsSettings, cores: int) -> list[int]:
    """Host cores for vCPU threads: all of them, less a busy-polling PMD's."""
    if backend != "vhost-user" or ovs.pmd_max_sleep_us > 0:
        return list(range(cores))
    free = [c for c in range(cores) if c not in ovs.pmd_cores()]
    return free or list(range(cores))


class Lab:
    """Owns the namespaces, switch, NAT, hugepages and every process of one lab run."""

    def __init__(self, settings: LabSettings, run_root: Path = RUN_ROOT) -> None:
        if settings.backend not in BACKENDS:
            raise HostnetError(f"unknown backend {settings.backend!r}; use one of {', '.join(BACKENDS)}")
        self.settings = settings
        self.lab_id = secrets.token_hex(3)
        self.run_dir = Path(run_root) / self.lab_id
        self.lan = NetworkNamespace(f"hn-{self.lab_id}-lan")
        self.wan = NetworkNamespace(f"hn-{self.lab_id}-wan")
        self.ovs: OvsDpdk | None = None
        self.hugepages: HugepageReservation | None = None
        self._stack = ExitStack()
        self._pids: list[int] = []
        self.watchdog_pid: int | None = None

    @property
    def backend(self) -> str:
        return BACKENDS[self.settings.backend]

    def __enter__(self) -> Lab:
        missing = missing_components(self.settings.backend)
        if missing:
            raise MissingComponentError(
                "missing for the hostnet lab: " + ", ".join(missing) + "; run scripts/install-hostnet-deps.sh as root"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._stack.callback(self._start_watchdog())
        self._stack.callback(shutil.rmtree, self.run_dir, ignore_errors=True)
        try:
            self._write_state()
            self._stack.enter_context(self.lan)
            self._stack.enter_context(self.wan)
            add_veth_pair(self.lan, "up0", f"{UPLINK_LAN_IP}/24", self.wan, "down0", f"{BEYOND_IP}/24")
            if self.backend == BACKEND_TAP:
                add_bridge(self.lan, LINUX_BRIDGE, f"{GATEWAY_IP}/24")
            else:
                self._start_ovs()
            enable_nat(self.lan, LAN_SUBNET, "up0")
            self._stack.enter_context(
                IperfServer(BEYOND_IP, BEYOND_IPERF_PORT, self.run_dir, netns=self.wan, on_start=self._register)
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start_watchdog(self):
        """A process that undoes this lab if this one dies without doing it; returns its stop.

        Stopped last, after the state file is gone, so it also covers a kill during teardown.
        """
        argv = [sys.executable, "-m", "hostnet.watchdog", "--owner-pid", str(os.getpid())]
        argv += ["--run-dir", str(self.run_dir)]
        with open(self.run_dir / "watchdog.log", "ab") as log:
            watchdog = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.watchdog_pid = watchdog.pid

        def stop() -> None:
            watchdog.kill()
            watchdog.wait()

        return stop

    def _start_ovs(self) -> None:
        ovs_mb = self.settings.ovs.socket_mem_mb
        guests_mb = self.settings.max_guests * self.settings.memory_mb
        self.hugepages = HugepageReservation(ovs_mb + guests_mb + 64, self.run_dir / "huge")
        self._stack.enter_context(self.hugepages)
        self._write_state()
        self.ovs = OvsDpdk(
            self.run_dir / "ovs",
            self.lan,
            self.hugepages.mount_dir,
            self.settings.ovs,
            file_prefix=f"hostnet-{self.lab_id}",
            on_start=self._register,
        )
        self._stack.enter_context(self.ovs)
        self.ovs.add_bridge(OVS_BRIDGE)
        # The bridge's internal port is a tap in the lan namespace: the guests' gateway.
        self.lan.ip("addr", "add", f"{GATEWAY_IP}/24", "dev", OVS_BRIDGE)
        self.lan.ip("link", "set", OVS_BRIDGE, "up")

    def _register(self, process) -> None:
        if process.pid:
            self._pids.append(process.pid)
            self._write_state()

    def _write_state(self) -> None:
        """Record what `hostnet down` must undo if this process dies without cleanup."""
        state = {
            "lab_id": self.lab_id,
            "pids": self._pids,
            "namespaces": [self.lan.name, self.wan.name],
            "nr_hugepages_before": self.hugepages.previous if self.hugepages else None,
            "hugepage_mount": str(self.hugepages.mount_dir) if self.hugepages else None,
        }
        (self.run_dir / "state.json").write_text(json.dumps(state))

    def attach(self, name: str, mac: str, queues: int = 1) -> NicSpec:
        """Create the host side of a NIC (tap or OVS port) for guest `name`."""
        tuning = self.settings.guest
        rings = dict(rx_queue_size=tuning.rx_queue_size, tx_queue_size=tuning.tx_queue_size, mrg_rxbuf=tuning.mrg_rxbuf)
        if self.backend == BACKEND_TAP:
            ifname = f"tap-{name}"[:15]
            add_tap(self.lan, ifname, LINUX_BRIDGE, queues)
            return NicSpec(BACKEND_TAP, "net0", mac, queues, ifname=ifname, vhost_net=vhost_net_available(), **rings)
        socket_path = self.run_dir / f"{name}.vhu"
        self.ovs.add_vhost_user_port(OVS_BRIDGE, f"vhu-{name}"[:15], socket_path, queues)
        return NicSpec(BACKEND_VHOST_USER, "net0", mac, queues, socket_path=socket_path, **rings)

    def detach(self, name: str) -> None:
        if self.backend == BACKEND_TAP:
            delete_link(self.lan, f"tap-{name}"[:15])
        elif self.ovs is not None and self.ovs.running():
            self.ovs.delete_port(OVS_BRIDGE, f"vhu-{name}"[:15])

    def guest(self, name: str, index: int, *, queues: int = 1, vcpus: int = 1, incoming: bool = False) -> LabGuest:
        """A guest on this lab's switch with address guest_ip(index); not yet launched."""
        return LabGuest(self, name, index, queues=queues, vcpus=vcpus, incoming=incoming)

    def __exit__(self, *exc_info) -> None:
        self._stack.close()


class LabGuest:
    """A VM plus its NIC's host side; both removed on exit."""

    def __init__(self, lab: Lab, name: str, index: int, *, queues: int, vcpus: int, incoming: bool) -> None:
        self.lab = lab
        self.name = name
        self.index = index
        self.queues = queues
        self.ip = guest_ip(index)
        nic = lab.attach(name, guest_mac(index), queues)
        self.nic = nic
        settings = lab.settings
        config = VMConfig(
            name=name,
            image=settings.image,
            accel=settings.accel,
            cpu_model=settings.guest.cpu_model,
            vcpus=vcpus,
            memory_mb=settings.memory_mb,
            nics=[nic],
            guest_ip=f"{self.ip}/24",
            gateway=GATEWAY_IP,
            incoming=incoming,
            tcp_buffer_max=settings.guest.tcp_buffer_max,
            hugepage_dir=lab.hugepages.mount_dir if lab.hugepages else None,
        )
        self.vm = VM(config, lab.run_dir, lab.lan, on_start=lab._register)

    def start(self) -> LabGuest:
        self.vm.launch()
        if self.lab.settings.guest.pin_vcpus:
            self.pin_vcpus()
        return self

    def pin_vcpus(self) -> dict[int, int]:
        """Each vCPU thread on one host core, guests spread round-robin; {tid: core}."""
        settings = self.lab.settings
        cores = guest_cores(settings.backend, settings.ovs, host_cores())
        placement = {}
        for j, tid in enumerate(self.vm.vcpu_threads()):
            core = cores[(self.index * self.vm.config.vcpus + j) % len(cores)]
            os.sched_setaffinity(tid, {core})
            placement[tid] = core
        self.pinned = placement
        return placement

    def close(self) -> None:
        try:
            self.vm.shutdown()
        finally:
            self.lab.detach(self.name)

    def __enter__(self) -> LabGuest:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
