"""Click commands for `deployer hostnet ...` and `deployer bench hostnet`.

deployer/cli.py mounts hostnet_group, deployer/commands/bench.py bench_command. Every
HostnetError becomes one ClickException line; long jobs show a spinner.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import click

from hostnet.errors import HostnetError
from hostnet.ovs import OvsSettings

from .output import table, write_report
from .params import choices, ints
from .progress import spinner

BACKEND_CHOICES = ("virtio-net", "vhost-user")


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


def _image(image_path):
    from hostnet.image import GuestImage, build_image

    return GuestImage.from_path(Path(image_path)) if image_path else build_image()


def _accel(choice):
    from hostnet.host import resolve_accelerator

    return resolve_accelerator(choice)


def _ovs_settings(pmd_cpu_mask: str, tso: bool, queues: int = 1, **tuning) -> OvsSettings:
    from hostnet.host import host_cores
    from hostnet.ovs import pmd_mask_for

    if pmd_cpu_mask == "auto":
        return OvsSettings(pmd_cpu_mask=pmd_mask_for(queues, host_cores()), tso=tso, **tuning)
    try:
        mask = int(pmd_cpu_mask, 0)
    except ValueError as exc:
        raise click.BadParameter(
            f"{pmd_cpu_mask!r} is not a CPU mask such as 0x2 or 'auto'", param_hint="--pmd-cpu-mask"
        ) from exc
    if mask <= 0:
        raise click.BadParameter("must name at least one core", param_hint="--pmd-cpu-mask")
    return OvsSettings(pmd_cpu_mask=mask, tso=tso, **tuning)


def _tuned(kw: dict, queues: int = 1):
    """(OvsSettings, GuestTuning) from the tuning options, removed from kw."""
    from hostnet.vm import GuestTuning

    ovs = _ovs_settings(
        kw.pop("pmd_cpu_mask"),
        kw.pop("tso"),
        queues,
        tx_flush_interval_us=kw.pop("tx_flush_interval"),
        pmd_max_sleep_us=kw.pop("pmd_max_sleep"),
        rxq_affinity=kw.pop("rxq_affinity"),
    )
    guest = GuestTuning(
        cpu_model=kw.pop("cpu_model"),
        rx_queue_size=kw.pop("rx_queue_size"),
        tx_queue_size=kw.pop("tx_queue_size"),
        mrg_rxbuf=kw.pop("mrg_rxbuf"),
        pin_vcpus=kw.pop("pin_vcpus"),
        tcp_buffer_max=kw.pop("tcp_buffer_max"),
    )
    return ovs, guest


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
TCP_BUFFER_MIN = 64 << 10  # a smaller max is a typo more likely than an experiment


def parse_buffer_size(text: str) -> int | None:
    """'6M' -> 6291456 (K, M, G are powers of 1024); '0', 'default' or 'kernel' -> None.

    Raises:
        click.BadParameter: not a size, or above 0 but under 64K, or 2G and more
            (the sysctls are C ints).
    """
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    if value in ("0", "DEFAULT", "KERNEL"):
        return None
    number, unit = (value[:-1], value[-1]) if value[-1:] in SIZE_UNITS else (value, "")
    if not number.isdigit():
        raise click.BadParameter(
            f"{text!r} is not a size in bytes such as 6291456 or 6M, or 0/default for the kernel's"
        )
    size = int(number) * SIZE_UNITS[unit]
    if size < TCP_BUFFER_MIN:
        raise click.BadParameter(f"{text!r} is under 64K; 0 or default keeps the kernel's")
    if size >= 1 << 31:
        raise click.BadParameter(f"{text!r} does not fit the kernel's int sysctl (under 2G)")
    return size


def _print_bench_table(report: dict) -> None:
    from rich.console import Console

    from hostnet.report import SMALL_HEADER, TABLE_HEADER, format_small_table, format_table, notes

    c = report["conditions"]
    width = max(Console().width, 150)
    title = (
        f"({c['accelerator']}, {c['host_cores']} host cores, PMD cores {c['ovs_pmd_cores']}, "
        f"TSO {c['ovs_userspace_tso']}, cpu {c['guest']['cpu_model']}, "
        f"TCP buffer max {c['guest'].get('tcp_buffer_max', 'kernel default')})"
    )
    for name, header, rows in (
        ("hostnet bench", TABLE_HEADER, format_table(report)),
        ("64-byte frames", SMALL_HEADER, format_small_table(report)),
    ):
        table(header, rows, f"{name} {title}", width=width, boxed=True)
    console = Console(width=width)
    for line in notes(report):
        console.print(f"scaling: {line}")


image_option = click.option(
    "--image",
    "image_path",
    type=click.Path(),
    help="Guest image dir (kernel+initrd) or qcow2/raw disk; default: build one.",
)
accel_option = click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto: kvm where it can boot a stock kernel.",
)
pmd_option = click.option(
    "--pmd-cpu-mask",
    default="auto",
    show_default=True,
    help="OVS PMD cores (vhost-user); auto: one per queue on cores 1.., capped at host cores - 1.",
)
tso_option = click.option("--tso/--no-tso", default=True, show_default=True, help="OVS userspace TSO (vhost-user).")
TUNING_OPTIONS = [
    click.option("--cpu-model", default="qemu64", show_default=True, help="Guest CPU model under TCG (KVM uses host)."),
    click.option(
        "--rx-queue-size",
        type=click.Choice(["256", "512", "1024"]),
        default="1024",
        show_default=True,
        callback=lambda c, p, v: int(v) if v else None,
        help="virtqueue rx ring (QEMU's own: 256).",
    ),
    click.option(
        "--tx-queue-size",
        type=click.Choice(["256", "512", "1024"]),
        default="1024",
        show_default=True,
        callback=lambda c, p, v: int(v) if v else None,
        help="virtqueue tx ring; above 256 vhost-user only (QEMU keeps tap's at 256).",
    ),
    click.option("--mrg-rxbuf/--no-mrg-rxbuf", default=None, help="Mergeable rx buffers; default QEMU's (on)."),
    click.option(
        "--tcp-buffer-max",
        default="16M",
        show_default=True,
        callback=lambda c, p, v: parse_buffer_size(v),
        metavar="BYTES",
        help="Guests' tcp_rmem/tcp_wmem max (and net.core rmem_max/wmem_max), "
        "e.g. 6M; 0 or default (or kernel): the kernel's own (1.5 MB at "
        "256 MB). Hostnet image only.",
    ),
    click.option(
        "--pin-vcpus/--no-pin-vcpus",
        default=False,
        show_default=True,
        help="Pin each vCPU thread to one host core, off the PMD cores.",
    ),
    click.option(
        "--tx-flush-interval",
        type=click.IntRange(0, 1000000),
        default=0,
        show_default=True,
        help="OVS tx-flush-interval in us (vhost-user).",
    ),
    click.option(
        "--pmd-max-sleep",
        type=click.IntRange(0, 10000),
        default=200,
        show_default=True,
        help="OVS pmd-maxsleep in us: an idle PMD sleeps, freeing its core (vhost-user); 0: busy-poll.",
    ),
    click.option(
        "--rxq-affinity/--no-rxq-affinity",
        default=True,
        show_default=True,
        help="Pin rx queue i to the i-th PMD core (vhost-user).",
    ),
]


def tuning_options(command):
    for option in reversed(TUNING_OPTIONS):
        command = option(command)
    return pmd_option(tso_option(command))


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
@tuning_options
def up_command(backend, guests, queues, image_path, accel, **kw):
    """Start a lab with guests and keep it up until Ctrl-C; then tear everything down."""
    from hostnet.lab import BEYOND_IP, Lab, LabSettings

    ovs, guest = _tuned(kw, queues)
    with _user_errors():
        image = _image(image_path)
        settings = LabSettings(
            backend=backend, image=image, accel=_accel(accel).name, max_guests=guests, ovs=ovs, guest=guest
        )
        with Lab(settings) as lab, spinner("hostnet up") as progress:
            members = []
            try:
                for index in range(guests):
                    progress(f"booting guest g{index}")
                    member = lab.guest(f"g{index}", index, queues=queues, vcpus=queues).start()
                    members.append(member)
                    if image.controllable:
                        member.vm.wait_ready()
                for member in members:
                    click.echo(
                        f"g{member.index}: {member.ip}  control shell socket "
                        f"{member.vm.serial_path}  console log {member.vm.serial_log}"
                    )
                click.echo(
                    f"namespaces {lab.lan.name} (guests), {lab.wan.name} "
                    f"(beyond: iperf3 server {BEYOND_IP}:5201). Ctrl-C to stop."
                )
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


def _run_bench(image_path, accel, **config):
    from hostnet.bench import BenchConfig, run_bench

    image = _image(image_path)
    with spinner("hostnet bench") as progress:
        return run_bench(image, BenchConfig(**config), _accel(accel), progress=progress)


def _run_migrate(backend, image_path, accel, **options):
    from hostnet.migrate import run_migration

    image = _image(image_path)
    with spinner("hostnet migrate") as progress:
        return run_migration(image, backend, _accel(accel), progress=progress, **options)


def _print_migration(report: dict) -> None:
    from hostnet.migrate import summary_lines

    for line in summary_lines(report):
        click.echo(line)


bench_options = [
    click.option("--backends", type=choices(BACKEND_CHOICES), default="virtio-net,vhost-user", show_default=True),
    click.option("--queues", type=ints(1, 8, example="1,2"), default="1,2", show_default=True),
    click.option(
        "--seconds",
        type=click.FloatRange(1, 600),
        default=5,
        show_default=True,
        help="iperf3 duration per TCP/UDP test.",
    ),
    click.option(
        "--small-loads",
        type=ints(1, 10_000_000, example="10000,30000"),
        default="10000,30000,100000",
        show_default=True,
        help="Offered rates (64-byte frames/s) for the small-packet test.",
    ),
    click.option("--small-seconds", type=click.FloatRange(1, 600), default=2, show_default=True),
    click.option(
        "--ping-count",
        type=click.IntRange(10, 100000),
        default=100,
        show_default=True,
        help="Pings (every 20 ms) for the latency percentiles.",
    ),
    click.option(
        "--quiet-wait",
        type=click.FloatRange(0, 3600),
        default=30,
        show_default=True,
        help="Before each measurement wait up to this long for the host to be "
        "mostly idle (a shared host); 0: do not wait.",
    ),
]


def with_options(options):
    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def _bench_config(kw: dict) -> dict:
    ovs, guest = _tuned(kw, max(kw["queues"]))
    return dict(
        backends=kw.pop("backends"),
        queues=kw.pop("queues"),
        iperf_seconds=kw.pop("seconds"),
        small_loads_pps=kw.pop("small_loads"),
        small_seconds=kw.pop("small_seconds"),
        ping_count=kw.pop("ping_count"),
        quiet_wait_s=kw.pop("quiet_wait"),
        vcpus=kw.pop("vcpus", None),
        ovs=ovs,
        guest=guest,
    )


@hostnet_group.command("bench")
@with_options(bench_options)
@click.option("--vcpus", type=click.IntRange(1, 64), default=None, help="vCPUs per guest; default: the queue count.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG plot; default: next to the JSON.")
@image_option
@accel_option
@tuning_options
def bench_subcommand(json_path, plot_path, image_path, accel, **kw):
    """Guest-to-guest TCP/UDP throughput, 64-byte frames and latency per backend and queue count."""
    from hostnet.report import plot_bench

    config = _bench_config(kw)
    with _user_errors():
        report = _run_bench(image_path, accel, **config)
    write_report(json_path, report, err=False)
    plot = Path(plot_path) if plot_path else Path(json_path).with_suffix(".png")
    click.echo(f"wrote {plot_bench(report, plot)}")
    _print_bench_table(report)


migrate_options = [
    click.option("--downtime-limit-ms", type=click.IntRange(1, 100000), default=None),
    click.option("--postcopy", is_flag=True, help="Switch to postcopy once precopy is running."),
    click.option(
        "--load-seconds",
        type=click.FloatRange(0, 600),
        default=12,
        show_default=True,
        help="TCP stream into the guest across the migration; 0: pings only.",
    ),
]


def _migrate_options(kw: dict) -> dict:
    ovs, guest = _tuned(kw)
    return dict(
        downtime_limit_ms=kw.pop("downtime_limit_ms"),
        postcopy=kw.pop("postcopy"),
        load_seconds=kw.pop("load_seconds"),
        ovs=ovs,
        guest=guest,
    )


@hostnet_group.command("migrate")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="vhost-user", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@with_options(migrate_options)
@image_option
@accel_option
@tuning_options
def migrate_subcommand(backend, json_path, image_path, accel, **kw):
    """Live-migrate a guest under a TCP stream and pings; report downtime, gap and dip."""
    options = _migrate_options(kw)
    with _user_errors():
        report = _run_migrate(backend, image_path, accel, **options)
    write_report(json_path, report, err=False)
    _print_migration(report)


@click.command("hostnet")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), required=True)
@with_options(bench_options)
@click.option("--migrate-backend", type=click.Choice(BACKEND_CHOICES), default="vhost-user", show_default=True)
@image_option
@accel_option
@tuning_options
def bench_command(json_path, migrate_backend, image_path, accel, **kw):
    """Host networking: bench (backends x queues) plus a live migration under load, one report."""
    config = _bench_config(kw)
    with _user_errors():
        bench = _run_bench(image_path, accel, **config)
        migration = _run_migrate(
            migrate_backend,
            image_path,
            accel,
            downtime_limit_ms=None,
            postcopy=False,
            load_seconds=12,
            ovs=config["ovs"],
            guest=config["guest"],
        )
    write_report(json_path, {"kind": "hostnet", "bench": bench, "migration": migration}, err=False)
    _print_bench_table(bench)
    _print_migration(migration)
