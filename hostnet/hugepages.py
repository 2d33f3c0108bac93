"""Reserve hugepages and mount a private hugetlbfs, then give both back.

OVS-DPDK and vhost-user guests need shared hugepage memory; the reservation
restores nr_hugepages to its previous value so nothing is held after the lab.
"""

from __future__ import annotations

from pathlib import Path

from hostnet.errors import MissingComponentError
from hostnet.process import run

NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
MEMINFO = Path("/proc/meminfo")


def hugepage_size_kb() -> int:
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("Hugepagesize:"):
            return int(line.split()[1])
    raise MissingComponentError("no Hugepagesize in /proc/meminfo; the kernel lacks hugetlbfs")


def free_hugepages() -> int:
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def pages_for(megabytes: int) -> int:
    size_kb = hugepage_size_kb()
    return -(-megabytes * 1024 // size_kb)


class HugepageReservation:
    """Raise nr_hugepages by enough pages for `megabytes`, mounted at mount_dir.

    Raises:
        MissingComponentError: the kernel could not reserve the pages (memory too
            fragmented or not root).
    """

    def __init__(self, megabytes: int, mount_dir: Path) -> None:
        self.megabytes = megabytes
        self.mount_dir = Path(mount_dir)
        self.previous: int | None = None
        self.mounted = False

    def reserve(self) -> HugepageReservation:
        pages = pages_for(self.megabytes)
        try:
            self.previous = int(NR_HUGEPAGES.read_text())
            NR_HUGEPAGES.write_text(str(self.previous + pages))
        except OSError as exc:
            raise MissingComponentError(
                f"cannot reserve {pages} hugepages via {NR_HUGEPAGES}: {exc}; run as root"
            ) from exc
        if free_hugepages() < pages:
            got = free_hugepages()
            self.release()
            raise MissingComponentError(
                f"asked for {pages} free hugepages ({self.megabytes} MB) but the kernel gave "
                f"{got}; free memory or reserve hugepages at boot"
            )
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "hugetlbfs", "-o", f"pagesize={hugepage_size_kb()}K", "hostnet", self.mount_dir])
        self.mounted = True
        return self

    def release(self) -> None:
        """Unmount and restore nr_hugepages; safe to call twice."""
        if self.mounted:
            run(["umount", self.mount_dir], check=False)
            self.mounted = False
        if self.previous is not None:
            NR_HUGEPAGES.write_text(str(self.previous))
            self.previous = None

    def __enter__(self) -> HugepageReservation:
        return self.reserve()

    def __exit__(self, *exc_info) -> None:
        self.release()
