"""The guest image: a Debian kernel plus a busybox initramfs, built from packages.

No cloud image is downloaded: the kernel comes from the Debian package registry
(`apt-get download`), busybox, iperf3 and ethtool from the host's packages. The
guest configures itself from the kernel command line (hostnet.ip=, hostnet.gw=,
hostnet.queues=, hostnet.tcp_buffer_max=) and is then driven over a virtio console
(hvc0); ttyS0 carries the kernel log. A user image (qcow2 or raw disk) can be used
instead, for `hostnet up` only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hostnet.errors import CommandError, HostnetError, ImageError
from hostnet.host import busybox_path
from hostnet.process import run

KERNEL_PACKAGE = os.environ.get("HOSTNET_KERNEL_PACKAGE", "linux-image-6.1.0-50-amd64")
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_console",
    "failover",
    "net_failover",
    "virtio_net",
)
GUEST_BINARIES = ("/usr/bin/iperf3", "/usr/sbin/ethtool")
READY_MARKER = "HOSTNET-READY"
ERROR_MARKER = "HOSTNET-ERROR"

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
dmesg -n 1
for m in __MODULES__; do insmod /lib/modules/$m.ko || echo "__ERROR__ insmod $m"; done
# Control channel: a virtio console (hvc0) in raw mode; the 16550 UART loses input under TCG.
n=0
while [ ! -e /dev/hvc0 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
[ -e /dev/hvc0 ] || { echo "__ERROR__ no /dev/hvc0 control console"; poweroff -f; }
exec 0</dev/hvc0 1>/dev/hvc0 2>&1
stty raw -echo
ip link set lo up
IP=; GW=; QUEUES=1; TCPBUF=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hostnet.ip=*) IP=${arg#hostnet.ip=} ;;
    hostnet.gw=*) GW=${arg#hostnet.gw=} ;;
    hostnet.queues=*) QUEUES=${arg#hostnet.queues=} ;;
    hostnet.name=*) hostname ${arg#hostnet.name=} ;;
    hostnet.tcp_buffer_max=*) TCPBUF=${arg#hostnet.tcp_buffer_max=} ;;
  esac
done
# TCP buffer max: keep the kernel's min and default (the default capped at the new max).
if [ -n "$TCPBUF" ]; then
  for f in /proc/sys/net/ipv4/tcp_rmem /proc/sys/net/ipv4/tcp_wmem; do
    set -- $(cat $f)
    d=$2; [ "$d" -gt "$TCPBUF" ] && d=$TCPBUF
    echo "$1 $d $TCPBUF" > $f || echo "__ERROR__ $f max $TCPBUF"
  done
  for f in /proc/sys/net/core/rmem_max /proc/sys/net/core/wmem_max; do
    echo "$TCPBUF" > $f || echo "__ERROR__ $f $TCPBUF"
  done
fi
n=0
while [ -n "$IP" ] && [ ! -e /sys/class/net/eth0 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
if [ -e /sys/class/net/eth0 ]; then
  [ "$QUEUES" -gt 1 ] && { ethtool -L eth0 combined "$QUEUES" || echo "__ERROR__ ethtool -L eth0 combined $QUEUES"; }
  ip link set eth0 up
  [ -n "$IP" ] && ip addr add "$IP" dev eth0
  [ -n "$GW" ] && ip route add default via "$GW"
elif [ -n "$IP" ]; then
  echo "__ERROR__ no eth0 after 30 s"
fi
echo __READY__
# A read loop, not cat: busybox cat uses sendfile, which holds tty input back.
while IFS= read -r line; do printf '%s\n' "$line"; done | sh 2>&1
poweroff -f
"""


def init_script() -> str:
    return (
        INIT_SCRIPT.replace("__MODULES__", " ".join(VIRTIO_MODULES))
        .replace("__ERROR__", ERROR_MARKER)
        .replace("__READY__", READY_MARKER)
    )


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: kernel + initrd (hostnet image) or a user disk image."""

    kernel: Path | None = None
    initrd: Path | None = None
    disk: Path | None = None
    kernel_release: str = "unknown"

    @property
    def controllable(self) -> bool:
        """True when the guest runs hostnet's init and can be driven over serial."""
        return self.kernel is not None and self.initrd is not None

    def describe(self) -> str:
        return str(self.disk) if self.disk else f"{self.kernel} + {self.initrd}"

    def require_controllable(self, command: str) -> None:
        """Measurements drive the guest over its control shell, which only hostnet's init offers.

        Raises:
            HostnetError: a user disk image, naming `command` and how to build a hostnet image.
        """
        if not self.controllable:
            raise HostnetError(
                f"{command} needs a hostnet image (kernel + initrd), got {self.describe()}; "
                "build one with `deployer hostnet image`"
            )

    @classmethod
    def from_path(cls, path: Path) -> GuestImage:
        """An image directory built by build_image, or a qcow2/raw disk image file.

        Raises:
            ImageError: the path is neither.
        """
        path = Path(path)
        if path.is_dir():
            kernel, initrd = path / "vmlinuz", path / "initrd.img"
            if not (kernel.exists() and initrd.exists()):
                raise ImageError(
                    f"image directory {path} lacks vmlinuz and initrd.img; build one with `deployer hostnet image`"
                )
            meta = path / "image.json"
            release = json.loads(meta.read_text()).get("kernel_release", "unknown") if meta.exists() else "unknown"
            return cls(kernel=kernel, initrd=initrd, kernel_release=release)
        if path.is_file():
            return cls(disk=path)
        raise ImageError(f"guest image {path} does not exist; pass an image directory or a qcow2/raw disk file")


def default_cache_dir() -> Path:
    env = os.environ.get("HOSTNET_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hostnet"


def find_kernel_deb(cache_dir: Path, package: str = KERNEL_PACKAGE) -> Path:
    """The cached kernel .deb, downloaded with apt-get (one explicit package) if absent.

    Raises:
        ImageError: it is not cached and apt-get cannot fetch it.
    """
    debs = cache_dir / "debs"
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise ImageError(f"no {package} .deb in {debs} and no apt-get; run scripts/install-hostnet-deps.sh")
    debs.mkdir(parents=True, exist_ok=True)
    try:
        run(["apt-get", "download", package], timeout_s=600, cwd=debs)
    except CommandError as exc:
        raise ImageError(
            f"apt-get download {package} into {debs} failed: {exc}; run scripts/install-hostnet-deps.sh"
        ) from exc
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise ImageError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def _image_key(deb: Path) -> str:
    digest = hashlib.sha256()
    digest.update(deb.name.encode())
    digest.update(init_script().encode())
    for binary in GUEST_BINARIES:
        digest.update(binary.encode())
    return digest.hexdigest()[:12]


def build_image(cache_dir: Path | None = None, *, force: bool = False) -> GuestImage:
    """Build (or reuse) the guest image in cache_dir/image-<key>/ and return it.

    Raises:
        ImageError: the kernel .deb, busybox or a guest binary is missing.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    deb = find_kernel_deb(cache_dir)
    out = cache_dir / f"image-{_image_key(deb)}"
    if out.exists() and not force:
        return GuestImage.from_path(out)
    busybox = busybox_path()
    if busybox is None:
        raise ImageError("busybox not found; install busybox-static (scripts/install-hostnet-deps.sh)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="build-") as tmp:
        tmp_path = Path(tmp)
        kernel, modules, release = _extract_kernel(deb, tmp_path / "deb")
        root = tmp_path / "root"
        _populate_root(root, busybox, modules)
        staging = tmp_path / "image"
        staging.mkdir()
        shutil.copy2(kernel, staging / "vmlinuz")
        _write_cpio(root, staging / "initrd.img")
        (staging / "image.json").write_text(
            json.dumps(
                {
                    "kernel_package": deb.name,
                    "kernel_release": release,
                    "modules": list(VIRTIO_MODULES),
                    "binaries": list(GUEST_BINARIES),
                },
                indent=2,
            )
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return GuestImage.from_path(out)


def _extract_kernel(deb: Path, dest: Path) -> tuple[Path, dict[str, Path], str]:
    dest.mkdir(parents=True)
    try:
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(
            [
                "tar",
                "-x",
                "-C",
                str(dest),
                "--wildcards",
                "./boot/vmlinuz-*",
                *[
                    f"./lib/modules/*/{m}.ko"
                    for m in (
                        "kernel/drivers/virtio/*",
                        "kernel/drivers/net/*",
                        "kernel/drivers/char/*",
                        "kernel/net/core/*",
                    )
                ],
            ],
            stdin=fsys.stdout,
            capture_output=True,
            text=True,
            timeout=300,
        )
        fsys.stdout.close()
        fsys.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"cannot unpack kernel package {deb}: {exc}") from exc
    if tar.returncode != 0 or fsys.returncode != 0:
        raise ImageError(
            f"unpacking {deb} failed (dpkg-deb {fsys.returncode}, tar {tar.returncode}): {tar.stderr.strip()[-500:]}"
        )
    kernels = sorted((dest / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ImageError(f"{deb} holds no /boot/vmlinuz-*; is it a linux-image package?")
    release = kernels[0].name.removeprefix("vmlinuz-")
    modules = {}
    for name in VIRTIO_MODULES:
        hits = list((dest / "lib/modules" / release).rglob(f"{name}.ko"))
        if not hits:
            raise ImageError(f"module {name}.ko not found in {deb} (release {release})")
        modules[name] = hits[0]
    return kernels[0], modules, release


def _populate_root(root: Path, busybox: Path, modules: dict[str, Path]) -> None:
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "lib/modules", "proc", "sys", "dev", "tmp", "run", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin/busybox")
    init = root / "init"
    init.write_text(init_script())
    init.chmod(0o755)
    for name, path in modules.items():
        shutil.copy2(path, root / "lib/modules" / f"{name}.ko")
    for binary in GUEST_BINARIES:
        if not Path(binary).exists():
            raise ImageError(f"{binary} not found on the host; install iperf3 and ethtool")
        _copy_with_libs(Path(binary), root)


def _copy_with_libs(binary: Path, root: Path) -> None:
    """Copy a dynamic binary and the shared libraries ldd lists, at the same paths."""
    out = run(["ldd", binary]).stdout
    paths = [binary]
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            paths.append(Path(parts[2]))
        elif parts and parts[0].startswith("/"):
            paths.append(Path(parts[0]))
    for path in paths:
        target = root / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), target)


def _write_cpio(root: Path, target: Path) -> None:
    """Uncompressed newc cpio: decompressing under TCG costs seconds of boot."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with open(target, "wb") as out:
        proc = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
            input="\n".join(files).encode(),
            stdout=out,
            stderr=subprocess.PIPE,
            cwd=root,
            timeout=120,
        )
    if proc.returncode != 0:
        raise ImageError(
            f"cpio exited {proc.returncode} building {target}: {proc.stderr.decode(errors='replace')[-500:]}"
        )
