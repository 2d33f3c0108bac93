"""Host networking lab: QEMU guests on virtio-net (tap) and OVS-DPDK vhost-user.

Builds a small guest image, boots guests under QEMU, wires them through network
namespaces, benchmarks guest-to-guest traffic and live-migrates a guest. Everything
started here is owned by an object that stops it on exit and on error.
"""

from hostnet.errors import HostnetError

__all__ = ["HostnetError"]
