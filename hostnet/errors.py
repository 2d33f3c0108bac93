"""The exceptions of hostnet, all rooted at HostnetError.

HostnetError
 ├── CommandError        a host command failed or timed out
 ├── MissingComponentError  QEMU, OVS, iperf3, root or hugepages not available
 ├── ImageError          the guest image cannot be built or is unusable
 ├── VMError             a guest failed to launch, boot, answer or stop
 ├── OvsError            OVS-DPDK failed to start or to be configured
 ├── IperfError          iperf3 failed or its JSON cannot be read
 └── MigrationError      a live migration failed or timed out
"""


class HostnetError(Exception):
    """Root of every error hostnet raises on purpose."""


class CommandError(HostnetError):
    """A host command exited non-zero, was missing or timed out."""


class MissingComponentError(HostnetError):
    """Something the lab needs is not on this host (package, root, hugepages)."""


class ImageError(HostnetError):
    """The guest image cannot be built or used."""


class VMError(HostnetError):
    """A guest failed to launch, to become ready, to answer or to stop."""


class OvsError(HostnetError):
    """OVS-DPDK failed to start or to accept its configuration."""


class IperfError(HostnetError):
    """iperf3 failed, or its JSON report is missing what we read."""


class MigrationError(HostnetError):
    """A live migration failed or did not finish in time."""


class GuestCrashed(MigrationError):
    """The migration completed but the guest's kernel died on the destination (its console says how)."""
