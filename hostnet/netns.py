"""Network namespaces, bridges, taps, veth pairs and NAT, all inside namespaces.

Guest networks never touch the host's own interfaces: every link hostnet makes
lives in a namespace it created, and deleting the namespace removes the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hostnet.process import run

NETNS_DIR = Path("/run/netns")
NAME_PREFIX = "hn-"


class NetworkNamespace:
    """A named network namespace (ip netns) that is deleted on exit."""

    def __init__(self, name: str) -> None:
        if not name.startswith(NAME_PREFIX) or len(name) > 32:
            raise ValueError(f"namespace name {name!r} must start with {NAME_PREFIX!r}")
        self.name = name
        self.created = False

    def exists(self) -> bool:
        return (NETNS_DIR / self.name).exists()

    def create(self) -> NetworkNamespace:
        run(["ip", "netns", "add", self.name])
        self.created = True
        self.ip("link", "set", "lo", "up")
        return self

    def delete(self) -> None:
        """Delete the namespace (and every link in it); safe to call twice."""
        if self.created and self.exists():
            run(["ip", "netns", "delete", self.name], check=False)
        self.created = False

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """argv that runs `argv` inside this namespace (ip execs, so the pid is the program's)."""
        return ["ip", "netns", "exec", self.name, *[str(a) for a in argv]]

    def run(self, argv: Sequence[str], **kwargs):
        return run(self.exec_argv(argv), **kwargs)

    def ip(self, *args: str, **kwargs):
        return run(["ip", "-n", self.name, *args], **kwargs)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def __enter__(self) -> NetworkNamespace:
        return self.create()

    def __exit__(self, *exc_info) -> None:
        self.delete()


def add_bridge(ns: NetworkNamespace, name: str, cidr: str | None = None) -> None:
    ns.ip("link", "add", name, "type", "bridge")
    if cidr:
        ns.ip("addr", "add", cidr, "dev", name)
    ns.ip("link", "set", name, "up")


def add_tap(ns: NetworkNamespace, name: str, bridge: str, queues: int = 1) -> None:
    """A tap on `bridge`; multi_queue only for queues > 1, as QEMU opens it accordingly."""
    args = ["tuntap", "add", "dev", name, "mode", "tap"]
    if queues > 1:
        args.append("multi_queue")
    ns.ip(*args)
    ns.ip("link", "set", name, "master", bridge)
    ns.ip("link", "set", name, "up")


def delete_link(ns: NetworkNamespace, name: str) -> None:
    ns.ip("link", "delete", name, check=False)


def add_veth_pair(
    ns_a: NetworkNamespace, name_a: str, cidr_a: str, ns_b: NetworkNamespace, name_b: str, cidr_b: str
) -> None:
    """A veth pair between two namespaces, created directly inside them."""
    run(["ip", "link", "add", name_a, "netns", ns_a.name, "type", "veth", "peer", "name", name_b, "netns", ns_b.name])
    for ns, name, cidr in ((ns_a, name_a, cidr_a), (ns_b, name_b, cidr_b)):
        ns.ip("addr", "add", cidr, "dev", name)
        ns.ip("link", "set", name, "up")


def enable_nat(ns: NetworkNamespace, subnet: str, out_dev: str) -> None:
    """Forward and masquerade `subnet` out of `out_dev`, inside `ns` only."""
    ns.sysctl("net.ipv4.ip_forward", "1")
    ns.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", subnet, "-o", out_dev, "-j", "MASQUERADE"])


def list_hostnet_namespaces() -> list[str]:
    if not NETNS_DIR.exists():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NAME_PREFIX))
