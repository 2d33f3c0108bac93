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
from .params import Number, OutputFile, OutputFolder, Pattern, choices, ints, stacked
from .progress import spinner

BACKEND_CHOICES = ("virtio-net", "vhost-user")


@contextmanager
def _user_errors():
    """Turn hostnet errors and Ctrl-C (SIGTERM too: the root group raises it as Ctrl-C) into one clean line."""
    try:
        yield
    except HostnetError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt as exc:
        raise click.ClickException("interrupted; everything started was stopped") from exc


def _image(image_path):
    from hostnet.image import GuestImage, build_image

    return GuestImage.from_path(Path(image_path)) if image_path else build_image()


def _accel(choice):
    from hostnet.host import resolve_accelerator

    return resolve_accelerator(choice)


class CpuMask(click.ParamType):
    """'auto', or a mask of host cores 0-63 such as 0x6 (OVS reads 64 bits)."""

    name = "mask"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            mask = int(str(value), 0)
        except ValueError:
            self.fail(f"{str(value)[:40]!r} is not a CPU mask such as 0x2 or 'auto'", param, ctx)
        if not 0 < mask < 1 << 64:
            self.fail(f"{str(value)[:40]!r} must name at least one of the cores 0-63", param, ctx)
        return mask


def _ovs_settings(pmd_cpu_mask: int | str, tso: bool, queues: int = 1, **tuning) -> OvsSettings:
    from hostnet.host import host_cores
    from hostnet.ovs import pmd_mask_for

    if pmd_cpu_mask == "auto":
        return OvsSettings(pmd_cpu_mask=pmd_mask_for(queues, host_cores()), tso=tso, **tuning)
    return OvsSettings(pmd_cpu_mask=pmd_cpu_mask, tso=tso, **tuning)


def _take(kw: dict, *names: str, **renamed: str) -> dict:
    """Removes options from a command's keyword arguments: `names` keep their name, `renamed` go by field=option."""
    return {**{name: kw.pop(name) for name in names}, **{field: kw.pop(name) for field, name in renamed.items()}}


def _tuned(kw: dict, queues: int = 1):
    """(OvsSettings, GuestTuning) from the tuning options, removed from kw."""
    from hostnet.vm import GuestTuning

    ovs = _ovs_settings(
        kw.pop("pmd_cpu_mask"),
        kw.pop("tso"),
        queues,
        **_take(kw, "rxq_affinity", tx_flush_interval_us="tx_flush_interval", pmd_max_sleep_us="pmd_max_sleep"),
    )
    guest = GuestTuning(
        **_take(kw, "cpu_model", "rx_queue_size", "tx_queue_size", "mrg_rxbuf", "pin_vcpus", "tcp_buffer_max")
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
    if not value:
        raise click.BadParameter(
            f"{text!r} is not a size in bytes such as 6291456 or 6M, or 0/default for the kernel's"
        )
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


def _shown(name: str, kind, default, help: str | None = None, **attrs):
    """An option whose default --help shows."""
    return click.option(name, type=kind, default=default, show_default=True, help=help, **attrs)


def _ring_option(name: str, help: str):
    """A virtqueue ring size: the choice is a string on the command line, an int in GuestTuning."""
    return _shown(
        name, click.Choice(["256", "512", "1024"]), "1024", help, callback=lambda c, p, v: int(v) if v else None
    )


image_option = click.option(
    "--image",
    "image_path",
    type=click.Path(exists=True),
    help="Guest image dir (kernel+initrd) or qcow2/raw disk; default: build one.",
)
accel_option = _shown(
    "--accel", click.Choice(["auto", "kvm", "tcg"]), "auto", "auto: kvm where it can boot a stock kernel."
)
json_option = click.option("--json", "json_path", type=OutputFile(), required=True)
TUNING_OPTIONS = [
    _shown(
        "--pmd-cpu-mask",
        CpuMask(),
        "auto",
        "OVS PMD cores (vhost-user); auto: one per queue on cores 1.., capped at host cores - 1.",
    ),
    _shown("--tso/--no-tso", None, True, "OVS userspace TSO (vhost-user)."),
    _shown(
        "--cpu-model",
        Pattern(r"[A-Za-z0-9][A-Za-z0-9_.,+=-]{0,127}", "a QEMU CPU model such as qemu64 or Skylake-Server,+avx2"),
        "qemu64",
        "Guest CPU model under TCG (KVM uses host).",
    ),
    _ring_option("--rx-queue-size", "virtqueue rx ring (QEMU's own: 256)."),
    _ring_option("--tx-queue-size", "virtqueue tx ring; above 256 vhost-user only (QEMU keeps tap's at 256)."),
    click.option("--mrg-rxbuf/--no-mrg-rxbuf", default=None, help="Mergeable rx buffers; default QEMU's (on)."),
    _shown(
        "--tcp-buffer-max",
        None,
        "16M",
        "Guests' tcp_rmem/tcp_wmem max (and net.core rmem_max/wmem_max), e.g. 6M; 0 or default (or kernel): "
        "the kernel's own (1.5 MB at 256 MB). Hostnet image only.",
        callback=lambda c, p, v: parse_buffer_size(v),
        metavar="BYTES",
    ),
    _shown("--pin-vcpus/--no-pin-vcpus", None, False, "Pin each vCPU thread to one host core, off the PMD cores."),
    _shown("--tx-flush-interval", click.IntRange(0, 1000000), 0, "OVS tx-flush-interval in us (vhost-user)."),
    _shown(
        "--pmd-max-sleep",
        click.IntRange(0, 10000),
        200,
        "OVS pmd-maxsleep in us: an idle PMD sleeps, freeing its core (vhost-user); 0: busy-poll.",
    ),
    _shown("--rxq-affinity/--no-rxq-affinity", None, True, "Pin rx queue i to the i-th PMD core (vhost-user)."),
]
# every command that starts guests: the image, the accelerator, then OVS and guest tuning
lab_options = stacked([image_option, accel_option, *TUNING_OPTIONS])


@click.group("hostnet")
def hostnet_group():
    """QEMU guests on virtio-net and OVS-DPDK vhost-user: bench and live migration."""


@hostnet_group.command("image")
@click.option("--cache-dir", type=OutputFolder(), help="Default: ~/.cache/hostnet.")
@click.option("--force", is_flag=True, help="Rebuild even if cached.")
def image_command(cache_dir, force):
    """Build the guest image (Debian kernel + busybox initramfs) into a cache dir."""
    from hostnet.image import build_image

    with _user_errors():
        image = build_image(Path(cache_dir) if cache_dir else None, force=force)
    click.echo(f"{image.kernel.parent}  (kernel {image.kernel_release})")


@hostnet_group.command("up")
@_shown("--backend", click.Choice(BACKEND_CHOICES), "virtio-net")
@click.option("--guests", type=click.IntRange(1, 4), default=2, show_default=True)
@click.option("--queues", type=click.IntRange(1, 8), default=1, show_default=True)
@lab_options
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
    _shown("--backends", choices(BACKEND_CHOICES), "virtio-net,vhost-user"),
    _shown("--queues", ints(1, 8, example="1,2"), "1,2"),
    _shown("--seconds", Number(1, 600), 5, "iperf3 duration per TCP/UDP test."),
    _shown(
        "--small-loads",
        ints(1, 10_000_000, example="10000,30000"),
        "10000,30000,100000",
        "Offered rates (64-byte frames/s) for the small-packet test.",
    ),
    _shown("--small-seconds", Number(1, 600), 2),
    _shown("--ping-count", click.IntRange(10, 100000), 100, "Pings (every 20 ms) for the latency percentiles."),
    _shown(
        "--quiet-wait",
        Number(0, 3600),
        30,
        "Before each measurement wait up to this long for the host to be mostly idle (a shared host); 0: do not wait.",
    ),
]


def _bench_config(kw: dict) -> dict:
    ovs, guest = _tuned(kw, max(kw["queues"]))
    return dict(
        **_take(kw, "backends", "queues", iperf_seconds="seconds", small_loads_pps="small_loads"),
        **_take(kw, "small_seconds", "ping_count", quiet_wait_s="quiet_wait"),
        vcpus=kw.pop("vcpus", None),
        ovs=ovs,
        guest=guest,
    )


@hostnet_group.command("bench")
@stacked(bench_options)
@click.option("--vcpus", type=click.IntRange(1, 64), default=None, help="vCPUs per guest; default: the queue count.")
@json_option
@click.option("--plot", "plot_path", type=OutputFile(), help="PNG plot; default: next to the JSON.")
@lab_options
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
    _shown("--load-seconds", Number(0, 600), 12, "TCP stream into the guest across the migration; 0: pings only."),
]


def _migrate_options(kw: dict) -> dict:
    ovs, guest = _tuned(kw)
    return dict(**_take(kw, "downtime_limit_ms", "postcopy", "load_seconds"), ovs=ovs, guest=guest)


@hostnet_group.command("migrate")
@_shown("--backend", click.Choice(BACKEND_CHOICES), "vhost-user")
@json_option
@stacked(migrate_options)
@lab_options
def migrate_subcommand(backend, json_path, image_path, accel, **kw):
    """Live-migrate a guest under a TCP stream and pings; report downtime, gap and dip."""
    options = _migrate_options(kw)
    with _user_errors():
        report = _run_migrate(backend, image_path, accel, **options)
    write_report(json_path, report, err=False)
    _print_migration(report)


@click.command("hostnet")
@json_option
@stacked(bench_options)
@_shown("--migrate-backend", click.Choice(BACKEND_CHOICES), "vhost-user")
@lab_options
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
