"""Live migration of a running guest to a second QEMU on the same host.

The destination has its own NIC (its own vhost-user socket and OVS port, or its
own tap) and waits with `-incoming defer`. A probe in the lab namespace pings the
guest every 100 ms throughout, and a TCP stream from the lab namespace into the
guest runs across it, so the report carries QEMU's own downtime, the gap the
network saw, the throughput dip and the retransmits. A failed migration leaves
the source running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from hostnet.bench import wait_iperf_listening
from hostnet.errors import GuestCrashed, HostnetError, MigrationError, VMError
from hostnet.guestnet import buffer_max_in_effect, tcp_buffers
from hostnet.host import Accelerator, host_facts
from hostnet.image import GuestImage
from hostnet.lab import RUN_ROOT, Lab, LabGuest, LabSettings
from hostnet.ovs import OvsSettings
from hostnet.pinger import Pinger
from hostnet.stream import INTERVAL_S, StreamLoad, stream_report
from hostnet.vm import VM, GuestTuning, NicSpec, nic_vectors

MIGRATION_PORT = 4444
FINAL_STATES = {"completed", "failed", "cancelled"}


def live_migrate(
    src: VM,
    dst: VM | None,
    uri: str,
    *,
    downtime_limit_ms: int | None = None,
    postcopy: bool = False,
    timeout_s: float = 300,
) -> dict:
    """Migrate src to dst (started with incoming=True) and return QEMU's statistics.

    dst None means something else already listens at uri.

    Raises:
        MigrationError: QEMU reported failure or it did not finish in timeout_s; the
            source is resumed if it was left paused.
    """
    route = f"{src.name} -> {dst.name if dst else uri}"
    try:
        _start_migration(src, dst, uri, downtime_limit_ms, postcopy)
    except VMError as exc:
        raise MigrationError(f"starting migration {route} at {uri} failed: {exc}") from exc
    info, postcopy_started = _follow_migration(src, route, postcopy, timeout_s)
    ram = info.get("ram", {})
    return {
        "status": "completed",
        "total_time_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "setup_time_ms": info.get("setup-time"),
        "ram_transferred_bytes": ram.get("transferred"),
        "ram_total_bytes": ram.get("total"),
        "ram_mbps": ram.get("mbps"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
        "postcopy_requests": ram.get("postcopy-requests"),
        "postcopy": postcopy_started,
    }


def _start_migration(src: VM, dst: VM | None, uri: str, downtime_limit_ms: int | None, postcopy: bool) -> None:
    """Postcopy must be enabled on both ends before the destination starts listening."""
    if postcopy:
        for vm in (src, dst):
            if vm is not None:
                vm.qmp("migrate-set-capabilities", capabilities=[{"capability": "postcopy-ram", "state": True}])
    if dst is not None:
        dst.qmp("migrate-incoming", uri=uri)
    if downtime_limit_ms is not None:
        src.qmp("migrate-set-parameters", **{"downtime-limit": downtime_limit_ms})
    src.qmp("migrate", uri=uri)


def _follow_migration(src: VM, route: str, postcopy: bool, timeout_s: float) -> tuple[dict, bool]:
    """(QEMU's final query-migrate, whether postcopy was switched on), once the migration completed.

    Postcopy is switched on once precopy has sent some RAM, so both phases run.

    Raises:
        MigrationError: it failed or did not finish in timeout_s; the source is left running.
    """
    deadline = time.monotonic() + timeout_s
    postcopy_started = False
    info: dict = {}
    while time.monotonic() < deadline:
        info = src.qmp("query-migrate") or {}
        status = info.get("status")
        if status in FINAL_STATES:
            break
        if postcopy and not postcopy_started and status == "active" and info.get("ram", {}).get("transferred", 0) > 0:
            src.qmp("migrate-start-postcopy")
            postcopy_started = True
        time.sleep(0.05)  # query-migrate is the documented way to follow progress
    else:
        _cancel_and_resume(src)
        raise MigrationError(f"migration {route} not finished in {timeout_s}s; last status: {info}")
    if info.get("status") != "completed":
        _cancel_and_resume(src)
        raise MigrationError(
            f"migration {route} {info.get('status')}: "
            f"{info.get('error-desc', 'no error description')}; QEMU log: "
            f"{src.qemu_log}"
        )
    return info, postcopy_started


def _cancel_and_resume(src: VM) -> None:
    """Leave the source guest running after a failed or stuck migration."""
    try:
        src.qmp("migrate_cancel")
        if (src.qmp("query-status") or {}).get("status") != "running":
            src.qmp("cont")
    except VMError:
        pass  # the MigrationError being raised says more than this would


def run_migration(
    image: GuestImage,
    backend: str,
    accel: Accelerator,
    *,
    downtime_limit_ms: int | None = None,
    postcopy: bool = False,
    memory_mb: int = 256,
    ping_interval_ms: float = 100,
    ovs: OvsSettings = OvsSettings(),
    guest: GuestTuning = GuestTuning(),
    load_seconds: float = 12,
    timeout_s: float = 300,
    progress: Callable[[str], None] = lambda _: None,
    run_root: Path = RUN_ROOT,
) -> dict:
    """Boot a guest, migrate it under pings and a TCP stream, check it still answers; report."""
    image.require_controllable("migrate")
    if postcopy and backend == "vhost-user":
        ovs = ovs.with_postcopy()  # OVS must register the guest memory with userfaultfd
    settings = LabSettings(
        backend=backend, image=image, accel=accel.name, memory_mb=memory_mb, max_guests=2, ovs=ovs, guest=guest
    )
    started = time.time()
    progress(f"{backend}: setting up the lab")
    with Lab(settings, run_root) as lab:
        buffers, outcome, dst_nic = _migrate_booted_source(
            lab,
            ping_interval_ms,
            load_seconds,
            progress,
            downtime_limit_ms=downtime_limit_ms,
            postcopy=postcopy,
            timeout_s=timeout_s,
        )
        conditions = {
            **host_facts(),
            "accelerator": accel.name,
            "accelerator_reason": accel.reason,
            "backend": backend,
            "vcpus": 1,
            "guest_memory_mb": memory_mb,
            "guest_kernel": image.kernel_release,
            "downtime_limit_ms": downtime_limit_ms,
            "postcopy": postcopy,
            "vectors": nic_vectors(dst_nic, accel.name),
            **_load_conditions(backend, ovs, ping_interval_ms, load_seconds),
            "guest": guest.as_dict(),
        }
        return {
            "kind": "hostnet-migrate",
            "conditions": conditions,
            "guest_tcp_buffers": buffers,
            "guest_tcp_buffer_max": buffer_max_in_effect(buffers),
            **outcome,
            "wall_s": round(time.time() - started, 1),
        }


def _migrate_booted_source(
    lab: Lab,
    ping_interval_ms: float,
    load_seconds: float,
    progress: Callable[[str], None],
    *,
    downtime_limit_ms: int | None,
    postcopy: bool,
    timeout_s: float,
) -> tuple[dict, dict, NicSpec]:
    """Boots the source guest and migrates it once pings answer and the stream runs.

    Returns (the source's TCP buffers, report parts, the destination's NIC).
    """
    with lab.guest("src", 0) as src:
        progress("booting the source guest")
        src.start()
        src.vm.wait_ready()
        buffers = tcp_buffers(src.vm)
        with (
            Pinger(lab.lan, src.ip, lab.run_dir, ping_interval_ms, on_start=lab._register) as pinger,
            ExitStack() as loads,
        ):
            pinger.wait_reply_after(time.time())
            stream = _start_stream(lab, src, load_seconds, loads, progress)
            outcome, dst_nic = _migrate_watched(
                lab,
                src,
                pinger,
                stream,
                load_seconds,
                progress,
                downtime_limit_ms=downtime_limit_ms,
                postcopy=postcopy,
                timeout_s=timeout_s,
            )
    return buffers, outcome, dst_nic


def _load_conditions(backend: str, ovs: OvsSettings, ping_interval_ms: float, load_seconds: float) -> dict:
    vhost_user = backend == "vhost-user"
    return {
        "ovs_pmd_cores": ovs.pmd_cores() if vhost_user else None,
        "ovs_userspace_tso": ovs.tso if vhost_user else None,
        "ping_interval_ms": ping_interval_ms,
        "load_seconds": load_seconds,
        "load": "iperf3 TCP, lab namespace -> guest, 1 stream" if load_seconds else None,
        "ovs": ovs.as_dict() if vhost_user else None,
    }


def _start_stream(
    lab: Lab, src: LabGuest, load_seconds: float, loads: ExitStack, progress: Callable[[str], None]
) -> StreamLoad | None:
    """The TCP stream into the guest, running steadily before the migration starts; None without load."""
    if load_seconds <= 0:
        return None
    wait_iperf_listening(src.vm)
    stream = loads.enter_context(StreamLoad(lab.lan, src.ip, load_seconds, lab.run_dir, on_start=lab._register))
    progress("TCP stream into the guest running")
    stream.wait_intervals(min(20, int(load_seconds / INTERVAL_S) // 3))
    return stream


def _migrate_watched(
    lab: Lab,
    src: LabGuest,
    pinger: Pinger,
    stream: StreamLoad | None,
    load_seconds: float,
    progress: Callable[[str], None],
    *,
    downtime_limit_ms: int | None,
    postcopy: bool,
    timeout_s: float,
) -> tuple[dict, NicSpec]:
    """Migrates src to a new destination guest while pinger and stream watch; (report parts, its NIC)."""
    with lab.guest("dst", 0, incoming=True) as dst:
        progress("starting the destination QEMU")
        dst.start()
        progress("migrating")
        migrate_start = time.time()
        qemu_stats = live_migrate(
            src.vm,
            dst.vm,
            f"tcp:127.0.0.1:{MIGRATION_PORT}",
            downtime_limit_ms=downtime_limit_ms,
            postcopy=postcopy,
            timeout_s=timeout_s,
        )
        completed_at = time.time()
        src.close()
        _wait_answering(dst, pinger, completed_at)
        load = None
        if stream is not None:
            # the stream keeps the guest's one TCG vCPU busy: its console answers after
            progress("waiting for the TCP stream to end")
            stream.wait_done(load_seconds + 60)
            load = stream_report(stream.intervals, migrate_start, completed_at, stream.sender)
        progress("checking the migrated guest answers")
        answer = dst.vm.run("echo alive; uptime", timeout_s=60)
        network = pinger.stop()
        state = dst.vm.qmp("query-status")
    return {
        "qemu": qemu_stats,
        "network": network,
        "load": load,
        "destination": {"status": (state or {}).get("status"), "answered": "alive" in answer},
    }, dst.nic


_CRASH_MARKS = ("Kernel panic", "BUG: ", "Oops: ")


def _wait_answering(dst: LabGuest, pinger: Pinger, completed_at: float) -> None:
    """Until the migrated guest answers a ping.

    Raises:
        GuestCrashed: its kernel died instead (seen here, rarely, with a TCP stream into a TCG guest on
            a loaded host: a NULL pointer in the guest's TCP receive path right after resuming).
        HostnetError: no answer within 60 s for another reason.
    """
    try:
        pinger.wait_reply_after(completed_at, timeout_s=60)
    except HostnetError as exc:
        crash = _kernel_crash(dst.vm.serial_log)
        if crash:
            raise GuestCrashed(
                f"the migration completed but the guest's kernel crashed on the destination: {crash} "
                f"(console: {dst.vm.serial_log})"
            ) from exc
        raise


def _kernel_crash(console: Path) -> str | None:
    """The console's first kernel crash line, or None."""
    try:
        text = console.read_text(errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if any(mark in line for mark in _CRASH_MARKS)]
    return lines[0] if lines else None


def summary_lines(report: dict) -> list[str]:
    """The migration report in a few printable lines."""
    q, n, c = report["qemu"], report["network"], report["conditions"]
    lines = [
        f"migration {c['backend']} ({c['accelerator']}{', postcopy' if q.get('postcopy') else ''}): "
        f"total {q['total_time_ms']} ms, QEMU downtime {q['downtime_ms']} ms, "
        f"{(q['ram_transferred_bytes'] or 0) / 1e6:.1f} MB sent; network gap (ping) "
        f"{n.get('network_downtime_ms') or 0:.0f} ms, pings lost {n.get('lost')}/"
        f"{n.get('sent')}; destination {report['destination']['status']}"
    ]
    load = report.get("load")
    if load and load.get("intervals"):
        lines.append(
            f"TCP stream: {load['mbps_before']} Mbit/s before, {load['mbps_during']} during, "
            f"{load['mbps_after']} after; lowest 100 ms interval "
            f"{load['mbps_min_around_migration']:.0f} Mbit/s; longest zero gap "
            f"{load['longest_zero_gap_ms']} ms; retransmits {load['retransmits_total']} "
            f"({load['retransmits_around_migration']} around the migration)"
        )
    return lines
