"""Real QEMU guests under TCG (or KVM), real OVS-DPDK, real iperf3.

Each test checks afterwards that it left nothing behind: no QEMU or OVS process,
no hn-* namespace, no hugetlbfs mount, nr_hugepages as it was.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from hostnet.bench import parse_ping, wait_iperf_listening
from hostnet.errors import GuestCrashed, MigrationError, VMError
from hostnet.guestnet import tcp_buffers
from hostnet.host import missing_components
from hostnet.hugepages import NR_HUGEPAGES
from hostnet.image import GuestImage
from hostnet.iperf import client_command, parse_iperf_json
from hostnet.lab import BEYOND_IP, BEYOND_IPERF_PORT, Lab, LabSettings
from hostnet.migrate import live_migrate, run_migration
from hostnet.netns import list_hostnet_namespaces
from hostnet.vm import VM, GuestTuning, VMConfig

pytestmark = [pytest.mark.hostnet, pytest.mark.timeout(300)]


def require(backend: str) -> None:
    missing = missing_components(backend)
    if missing:
        pytest.skip(f"{backend} needs: " + ", ".join(missing) + " (run scripts/install-hostnet-deps.sh as root)")


def _our_processes(run_root: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(run_root) in cmdline:
                found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def _hugetlb_mounts(run_root: Path) -> list[str]:
    return [
        line for line in Path("/proc/mounts").read_text().splitlines() if "hugetlbfs" in line and str(run_root) in line
    ]


@pytest.fixture()
def nothing_left(run_root):
    """Asserts after the test that the lab cleaned up everything it made."""
    namespaces = set(list_hostnet_namespaces())
    hugepages = NR_HUGEPAGES.read_text().strip()
    yield run_root
    assert _our_processes(run_root) == []
    assert set(list_hostnet_namespaces()) - namespaces == set()
    assert _hugetlb_mounts(run_root) == []
    assert NR_HUGEPAGES.read_text().strip() == hugepages
    assert list(run_root.iterdir()) == []


def _settings(backend, image, accel, **kw):
    return LabSettings(backend=backend, image=image, accel=accel.name, **kw)


def test_launch_failure_names_command_and_log(tmp_path, accel):
    require("virtio-net")
    bad = GuestImage(kernel=tmp_path / "no-kernel", initrd=tmp_path / "no-initrd")
    with pytest.raises(VMError, match=r"qemu exited 1; command: .*no-kernel.*; log: "):
        with VM(VMConfig(name="bad", image=bad, accel=accel.name), tmp_path) as vm:
            vm.launch(timeout_s=60)
    assert _our_processes(tmp_path) == []


def test_guest_reaches_the_network_beyond_through_nat(guest_image, accel, nothing_left):
    with Lab(_settings("virtio-net", guest_image, accel, max_guests=1), nothing_left) as lab:
        with lab.guest("g0", 0) as guest:
            guest.start().vm.wait_ready()
            ping = parse_ping(guest.vm.run(f"ping -c 3 {BEYOND_IP}", timeout_s=60))
            assert ping["received"] >= 1
            result = parse_iperf_json(
                guest.vm.run(client_command(BEYOND_IP, seconds=1, port=BEYOND_IPERF_PORT), timeout_s=90)
            )
            assert result.bits_per_second > 0
            # The beyond namespace has no route to the guests: only NAT makes this work.
            routes = lab.wan.ip("route").stdout
            assert "10.66.0" not in routes


@pytest.mark.parametrize("backend,queues,tcp_buffer_max", [("virtio-net", 1, None), ("vhost-user", 2, 6 << 20)])
def test_two_guests_ping_and_iperf(guest_image, accel, nothing_left, backend, queues, tcp_buffer_max):
    require(backend)
    guest = GuestTuning(tcp_buffer_max=tcp_buffer_max)
    with Lab(_settings(backend, guest_image, accel, guest=guest), nothing_left) as lab:
        with lab.guest("srv", 0, queues=queues) as server, lab.guest("cli", 1, queues=queues) as client:
            server.start()
            client.start()
            server.vm.wait_ready()
            client.vm.wait_ready()
            ping = parse_ping(client.vm.run(f"ping -c 3 {server.ip}", timeout_s=60))
            assert ping["received"] >= 2
            buffers = tcp_buffers(server.vm)
            if tcp_buffer_max:
                assert buffers["tcp_rmem"][2] == buffers["tcp_wmem"][2] == tcp_buffer_max
                assert buffers["rmem_max"] == buffers["wmem_max"] == [tcp_buffer_max]
            else:  # the kernel's, sized from guest memory
                assert buffers["tcp_rmem"][2] not in (0, 6 << 20)
            assert buffers["tcp_rmem"][:2] == [4096, 131072]  # min and default kept
            assert client.vm.run("ethtool -l eth0 | tail -n 1").split()[-1] == str(queues)
            wait_iperf_listening(server.vm)
            tcp = parse_iperf_json(client.vm.run(client_command(server.ip, seconds=2, streams=queues), timeout_s=120))
            assert tcp.protocol == "TCP" and tcp.streams == queues
            assert tcp.bits_per_second > 0  # data crossed the link; speed is for `hostnet bench`


def test_live_migration_over_vhost_user_keeps_the_guest_answering(guest_image, accel, nothing_left):
    require("vhost-user")
    try:
        report = run_migration(guest_image, "vhost-user", accel, run_root=nothing_left, load_seconds=6)
    except GuestCrashed as exc:
        # TCG + OVS-DPDK under a TCP stream on a loaded host: the guest's kernel dies after about one
        # migration in ten (a corrupted pointer in its TCP receive path). Reported as such; once more.
        warnings.warn(f"first migration: {exc}", stacklevel=1)
        report = run_migration(guest_image, "vhost-user", accel, run_root=nothing_left, load_seconds=6)
    assert report["qemu"]["status"] == "completed"
    assert report["load"]["intervals"] > 0 and report["load"]["mbps_after"] > 0
    assert report["qemu"]["downtime_ms"] is not None
    assert report["destination"] == {"status": "running", "answered": True}
    assert report["network"]["received"] > 0
    assert report["conditions"]["accelerator"] == accel.name


def test_failed_migration_leaves_the_source_running(guest_image, accel, nothing_left):
    with Lab(_settings("virtio-net", guest_image, accel, max_guests=1), nothing_left) as lab:
        with lab.guest("src", 0) as src:
            src.start().vm.wait_ready()
            with pytest.raises(MigrationError, match="failed"):
                live_migrate(src.vm, None, "tcp:127.0.0.1:9", timeout_s=60)
            assert src.vm.qmp("query-status")["status"] == "running"
            assert "alive" in src.vm.run("echo alive")


def test_postcopy_migration_over_vhost_user_completes_with_ovs_postcopy_support(guest_image, accel, nothing_left):
    require("vhost-user")
    report = run_migration(guest_image, "vhost-user", accel, run_root=nothing_left, postcopy=True, load_seconds=0)
    assert report["qemu"]["status"] == "completed" and report["qemu"]["postcopy"] is True
    assert report["conditions"]["ovs"]["vhost_postcopy_support"] is True
    assert report["destination"] == {"status": "running", "answered": True}


OWNER = """
import json, sys, threading
from pathlib import Path
from hostnet.image import GuestImage
from hostnet.lab import Lab, LabSettings

image = GuestImage(kernel=Path(sys.argv[2]), initrd=Path(sys.argv[3]))
settings = LabSettings(backend="vhost-user", image=image, accel=sys.argv[4], max_guests=1)
with Lab(settings, Path(sys.argv[1])) as lab:
    guest = lab.guest("g0", 0).start()
    print(json.dumps({"watchdog": lab.watchdog_pid, "qemu": guest.vm.pid}), flush=True)
    threading.Event().wait()
"""


def test_a_lab_whose_owner_is_killed_is_undone_by_its_watchdog(guest_image, accel, nothing_left):
    """SIGKILL to the owner's whole process group: QEMU, OVS, namespaces and hugepages still go."""
    import json
    import os
    import select
    import signal
    import subprocess
    import sys

    require("vhost-user")
    image = [str(guest_image.kernel), str(guest_image.initrd)]
    argv = [sys.executable, "-c", OWNER, str(nothing_left), *image, accel.name]
    owner = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = owner.stdout.readline()
        assert line, "the owner did not start its lab"
        started = json.loads(line)
        watchdog = os.pidfd_open(started["watchdog"])
        (state,) = nothing_left.glob("*/state.json")
        recorded = json.loads(state.read_text())["pids"]
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(timeout=60)
        owner.stdout.close()
    try:
        assert select.select([watchdog], [], [], 120)[0], "the watchdog did not finish within 120 s"
    finally:
        os.close(watchdog)
    assert started["qemu"] in recorded and len(recorded) >= 4  # iperf3 beyond, ovsdb-server, ovs-vswitchd, qemu
    left = [pid for pid in recorded if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "the watchdog left these running"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
