"""Click commands for `deployer hostnet ...` and `deployer bench hostnet`.

The lead's deployer/cli.py mounts hostnet_group and bench_command. Every
HostnetError becomes one ClickException line; long jobs show rich progress.
"""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path

import click

from hostnet.errors import HostnetError
from hostnet.ovs import OvsSettings

BACKEND_CHOICES = ("virtio-net", "vhost-user")


def _csv(kind, allowed=None):
    def convert(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise click.BadParameter("give at least one value")
        if kind is int:
            try:
                items = [int(v) for v in items]
            except ValueError as exc:
                raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") \
                    from exc
            if any(v < 1 or v > 8 for v in items):
                raise click.BadParameter(f"queue counts must be 1..8, got {value}")
        if allowed:
            bad = [v for v in items if v not in allowed]
            if bad:
                raise click.BadParameter(f"unknown {', '.join(bad)}; choose from "
                                         f"{', '.join(allowed)}")
        return tuple(items)
    return convert


@contextmanager
def _user_errors():
    """Turn hostnet errors (and Ctrl-C / SIGTERM) into one clean line."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except HostnetError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt as exc:
        raise click.ClickException("interrupted; everything started was stopped") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _progress(title: str):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=False) as progress:
        task = progress.add_task(title, total=None)
        yield lambda text: progress.update(task, description=f"{title}: {text}")


def _image(image_path):
    from hostnet.image import GuestImage, build_image
    return GuestImage.from_path(Path(image_path)) if image_path else build_image()


def _accel(choice):
    from hostnet.host import resolve_accelerator
    return resolve_accelerator(choice)


def _ovs_settings(pmd_cpu_mask: str, tso: bool) -> OvsSettings:
    try:
        mask = int(pmd_cpu_mask, 0)
    except ValueError as exc:
        raise click.BadParameter(f"{pmd_cpu_mask!r} is not a CPU mask such as 0x2",
                                 param_hint="--pmd-cpu-mask") from exc
    if mask <= 0:
        raise click.BadParameter("must name at least one core", param_hint="--pmd-cpu-mask")
    return OvsSettings(pmd_cpu_mask=mask, tso=tso)


def _write_json(path: Path, report: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"wrote {path}")


def _print_bench_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from hostnet.bench import TABLE_HEADER, format_table
    c = report["conditions"]
    table = Table(title=f"hostnet bench ({c['accelerator']}, {c['host_cores']} host cores, "
                        f"PMD cores {c['ovs_pmd_cores']}, TSO {c['ovs_userspace_tso']})")
    for column in TABLE_HEADER:
        table.add_column(column)
    for row in format_table(report):
        table.add_row(*row)
    Console(width=max(Console().width, 110)).print(table)


image_option = click.option("--image", "image_path", type=click.Path(),
                            help="Guest image dir (kernel+initrd) or qcow2/raw disk; default: build one.")
accel_option = click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
                            show_default=True, help="auto: kvm where it can boot a stock kernel.")
pmd_option = click.option("--pmd-cpu-mask", default="0x2", show_default=True,
                          help="OVS PMD cores (vhost-user).")
tso_option = click.option("--tso/--no-tso", default=True, show_default=True,
                          help="OVS userspace TSO (vhost-user).")


@click.group("hostnet")
def hostnet_group():
    """QEMU guests on virtio-net and OVS-DPDK vhost-user: bench and live migration."""


@hostnet_group.command("image")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Default: ~/.cache/hostnet.")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
def image_command(cache_dir, force):
    """Build the guest image (Debian kernel + busybox initramfs) into a cache dir."""
    from hostnet.image import build_image
    with _user_errors():
        image = build_image(Path(cache_dir) if cache_dir else None, force=force)
    click.echo(f"{image.kernel.parent}  (kernel {image.kernel_release})")


@hostnet_group.command("up")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="virtio-net", show_default=True)
@click.option("--guests", type=click.IntRange(1, 4), default=2, show_default=True)
@click.option("--queues", type=click.IntRange(1, 8), default=1, show_default=True)
@image_option
@accel_option
@pmd_option
@tso_option
def up_command(backend, guests, queues, image_path, accel, pmd_cpu_mask, tso):
    """Start a lab with guests and keep it up until Ctrl-C; then tear everything down."""
    from hostnet.lab import BEYOND_IP, Lab, LabSettings
    ovs = _ovs_settings(pmd_cpu_mask, tso)
    with _user_errors():
        image = _image(image_path)
        settings = LabSettings(backend=backend, image=image, accel=_accel(accel).name,
                               max_guests=guests, ovs=ovs)
        with Lab(settings) as lab, _progress("hostnet up") as progress:
            members = []
            try:
                for index in range(guests):
                    progress(f"booting guest g{index}")
                    member = lab.guest(f"g{index}", index, queues=queues).start()
                    members.append(member)
                    if image.controllable:
                        member.vm.wait_ready()
                for member in members:
                    click.echo(f"g{member.index}: {member.ip}  control shell socket "
                               f"{member.vm.serial_path}  console log {member.vm.serial_log}")
                click.echo(f"namespaces {lab.lan.name} (guests), {lab.wan.name} "
                           f"(beyond: iperf3 server {BEYOND_IP}:5201). Ctrl-C to stop.")
                signal.pause()
            finally:
                for member in members:
                    member.close()


@hostnet_group.command("down")
def down_command():
    """Remove what a crashed lab left: processes, namespaces, hugepages, mounts."""
    from hostnet.cleanup import clean_leftovers
    with _user_errors():
        done = clean_leftovers()
    click.echo("\n".join(done) if done else "nothing to clean")


def _run_bench(backends, queues, seconds, vcpus, image_path, accel, ovs):
    from hostnet.bench import BenchConfig, run_bench
    config = BenchConfig(backends=backends, queues=queues, iperf_seconds=seconds,
                         vcpus=vcpus, ovs=ovs)
    image = _image(image_path)
    with _progress("hostnet bench") as progress:
        return run_bench(image, config, _accel(accel), progress=progress)


def _run_migrate(backend, downtime_limit_ms, postcopy, image_path, accel, ovs):
    from hostnet.migrate import run_migration
    image = _image(image_path)
    with _progress("hostnet migrate") as progress:
        return run_migration(image, backend, _accel(accel), downtime_limit_ms=downtime_limit_ms,
                             postcopy=postcopy, ovs=ovs, progress=progress)


def _print_migration(report: dict) -> None:
    q, n = report["qemu"], report["network"]
    click.echo(f"migration {report['conditions']['backend']} ({report['conditions']['accelerator']}): "
               f"total {q['total_time_ms']} ms, QEMU downtime {q['downtime_ms']} ms, "
               f"{(q['ram_transferred_bytes'] or 0) / 1e6:.1f} MB sent; network downtime "
               f"{n.get('network_downtime_ms') or 0:.0f} ms, pings lost {n.get('lost')}/"
               f"{n.get('sent')}; destination {report['destination']['status']}")


@hostnet_group.command("bench")
@click.option("--backends", default="virtio-net,vhost-user", show_default=True,
              callback=_csv(str, BACKEND_CHOICES))
@click.option("--queues", default="1,2", show_default=True, callback=_csv(int))
@click.option("--seconds", type=click.FloatRange(1, 600), default=5, show_default=True,
              help="iperf3 duration per test.")
@click.option("--vcpus", type=click.IntRange(1, 64), default=None,
              help="vCPUs per guest; default: the queue count, capped at host cores.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="PNG plot; default: next to the JSON.")
@image_option
@accel_option
@pmd_option
@tso_option
def bench_subcommand(backends, queues, seconds, vcpus, json_path, plot_path, image_path, accel,
                     pmd_cpu_mask, tso):
    """Guest-to-guest iperf3 TCP/UDP and ping per backend and queue count."""
    from hostnet.bench import plot_bench
    ovs = _ovs_settings(pmd_cpu_mask, tso)
    with _user_errors():
        report = _run_bench(backends, queues, seconds, vcpus, image_path, accel, ovs)
    _write_json(Path(json_path), report)
    plot = Path(plot_path) if plot_path else Path(json_path).with_suffix(".png")
    click.echo(f"wrote {plot_bench(report, plot)}")
    _print_bench_table(report)


@hostnet_group.command("migrate")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="vhost-user", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--downtime-limit-ms", type=click.IntRange(1, 100000), default=None)
@click.option("--postcopy", is_flag=True, help="Switch to postcopy once precopy is running.")
@image_option
@accel_option
@pmd_option
@tso_option
def migrate_subcommand(backend, json_path, downtime_limit_ms, postcopy, image_path, accel,
                       pmd_cpu_mask, tso):
    """Live-migrate a guest with pings running; report QEMU and network downtime."""
    ovs = _ovs_settings(pmd_cpu_mask, tso)
    with _user_errors():
        report = _run_migrate(backend, downtime_limit_ms, postcopy, image_path, accel, ovs)
    _write_json(Path(json_path), report)
    _print_migration(report)


@click.command("hostnet")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--backends", default="virtio-net,vhost-user", show_default=True,
              callback=_csv(str, BACKEND_CHOICES))
@click.option("--queues", default="1,2", show_default=True, callback=_csv(int))
@click.option("--seconds", type=click.FloatRange(1, 600), default=5, show_default=True)
@click.option("--migrate-backend", type=click.Choice(BACKEND_CHOICES), default="vhost-user",
              show_default=True)
@image_option
@accel_option
@pmd_option
@tso_option
def bench_command(json_path, backends, queues, seconds, migrate_backend, image_path, accel,
                  pmd_cpu_mask, tso):
    """Host networking: bench (backends x queues) plus a live migration, one report."""
    ovs = _ovs_settings(pmd_cpu_mask, tso)
    with _user_errors():
        bench = _run_bench(backends, queues, seconds, None, image_path, accel, ovs)
        migration = _run_migrate(migrate_backend, None, False, image_path, accel, ovs)
    _write_json(Path(json_path), {"kind": "hostnet", "bench": bench, "migration": migration})
    _print_bench_table(bench)
    _print_migration(migration)
