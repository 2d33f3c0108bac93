"""Live migration of a running guest to a second QEMU on the same host.

The destination has its own NIC (its own vhost-user socket and OVS port, or its
own tap) and waits with `-incoming defer`. A probe in the lab namespace pings the
guest every 100 ms throughout, so the report carries both QEMU's own downtime and
the downtime the network saw. A failed migration leaves the source running.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from hostnet.errors import HostnetError, MigrationError, VMError
from hostnet.host import Accelerator, host_facts
from hostnet.image import GuestImage
from hostnet.lab import RUN_ROOT, Lab, LabSettings
from hostnet.ovs import OvsSettings
from hostnet.pinger import Pinger
from hostnet.vm import VM, nic_vectors

MIGRATION_PORT = 4444
FINAL_STATES = {"completed", "failed", "cancelled"}


def live_migrate(src: VM, dst: VM | None, uri: str, *, downtime_limit_ms: int | None = None,
                 postcopy: bool = False, timeout_s: float = 300) -> dict:
    """Migrate src to dst (started with incoming=True) and return QEMU's statistics.

    dst None means something else already listens at uri.

    Raises:
        MigrationError: QEMU reported failure or it did not finish in timeout_s; the
            source is resumed if it was left paused.
    """
    try:
        if postcopy:
            for vm in (src, dst):
                if vm is not None:
                    vm.qmp("migrate-set-capabilities",
                           capabilities=[{"capability": "postcopy-ram", "state": True}])
        if dst is not None:
            dst.qmp("migrate-incoming", uri=uri)
        if downtime_limit_ms is not None:
            src.qmp("migrate-set-parameters", **{"downtime-limit": downtime_limit_ms})
        src.qmp("migrate", uri=uri)
    except VMError as exc:
        raise MigrationError(f"starting migration {src.name} -> {dst.name if dst else uri} at {uri} failed: "
                             f"{exc}") from exc
    deadline = time.monotonic() + timeout_s
    postcopy_started = False
    info: dict = {}
    while time.monotonic() < deadline:
        info = src.qmp("query-migrate") or {}
        status = info.get("status")
        if status in FINAL_STATES:
            break
        if postcopy and not postcopy_started and status == "active" \
                and info.get("ram", {}).get("transferred", 0) > 0:
            src.qmp("migrate-start-postcopy")
            postcopy_started = True
        time.sleep(0.05)  # query-migrate is the documented way to follow progress
    else:
        _cancel_and_resume(src)
        raise MigrationError(f"migration {src.name} -> {dst.name if dst else uri} not finished in {timeout_s}s; "
                             f"last status: {info}")
    if info.get("status") != "completed":
        _cancel_and_resume(src)
        raise MigrationError(f"migration {src.name} -> {dst.name if dst else uri} {info.get('status')}: "
                             f"{info.get('error-desc', 'no error description')}; QEMU log: "
                             f"{src.qemu_log}")
    ram = info.get("ram", {})
    return {"status": "completed", "total_time_ms": info.get("total-time"),
            "downtime_ms": info.get("downtime"), "setup_time_ms": info.get("setup-time"),
            "ram_transferred_bytes": ram.get("transferred"), "ram_total_bytes": ram.get("total"),
            "ram_mbps": ram.get("mbps"), "dirty_sync_count": ram.get("dirty-sync-count"),
            "postcopy_requests": ram.get("postcopy-requests"), "postcopy": postcopy_started}


def _cancel_and_resume(src: VM) -> None:
    """Leave the source guest running after a failed or stuck migration."""
    try:
        src.qmp("migrate_cancel")
        if (src.qmp("query-status") or {}).get("status") != "running":
            src.qmp("cont")
    except VMError:
        pass  # the MigrationError being raised says more than this would


def run_migration(image: GuestImage, backend: str, accel: Accelerator, *,
                  downtime_limit_ms: int | None = None, postcopy: bool = False,
                  memory_mb: int = 256, ping_interval_ms: float = 100,
                  ovs: OvsSettings = OvsSettings(), timeout_s: float = 300,
                  progress: Callable[[str], None] = lambda _: None,
                  run_root: Path = RUN_ROOT) -> dict:
    """Boot a guest, migrate it with pings running, check it still answers; report."""
    if not image.controllable:
        raise HostnetError(f"migrate needs a hostnet image (kernel + initrd), got "
                           f"{image.describe()}; build one with `deployer hostnet image`")
    settings = LabSettings(backend=backend, image=image, accel=accel.name,
                           memory_mb=memory_mb, max_guests=2, ovs=ovs)
    started = time.time()
    progress(f"{backend}: setting up the lab")
    with Lab(settings, run_root) as lab:
        with lab.guest("src", 0) as src:
            progress("booting the source guest")
            src.start()
            src.vm.wait_ready()
            with Pinger(lab.lan, src.ip, lab.run_dir, ping_interval_ms,
                        on_start=lab._register) as pinger:
                pinger.wait_reply_after(time.time())
                with lab.guest("dst", 0, incoming=True) as dst:
                    progress("starting the destination QEMU")
                    dst.start()
                    progress("migrating")
                    qemu_stats = live_migrate(src.vm, dst.vm, f"tcp:127.0.0.1:{MIGRATION_PORT}",
                                              downtime_limit_ms=downtime_limit_ms,
                                              postcopy=postcopy, timeout_s=timeout_s)
                    completed_at = time.time()
                    src.close()
                    progress("checking the migrated guest answers")
                    answer = dst.vm.run("echo alive; uptime", timeout_s=60)
                    pinger.wait_reply_after(completed_at, timeout_s=60)
                    network = pinger.stop()
                    state = dst.vm.qmp("query-status")
        return {"kind": "hostnet-migrate",
                "conditions": {**host_facts(), "accelerator": accel.name,
                               "accelerator_reason": accel.reason, "backend": backend,
                               "vcpus": 1, "guest_memory_mb": memory_mb,
                               "guest_kernel": image.kernel_release,
                               "downtime_limit_ms": downtime_limit_ms, "postcopy": postcopy,
                               "vectors": nic_vectors(dst.nic, accel.name),
                               "ovs_pmd_cores": ovs.pmd_cores() if backend == "vhost-user" else None,
                               "ovs_userspace_tso": ovs.tso if backend == "vhost-user" else None,
                               "ping_interval_ms": ping_interval_ms},
                "qemu": qemu_stats, "network": network,
                "destination": {"status": (state or {}).get("status"),
                                "answered": "alive" in answer},
                "wall_s": round(time.time() - started, 1)}
