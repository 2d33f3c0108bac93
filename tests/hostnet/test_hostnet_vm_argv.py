"""QEMU command-line construction: one place, right per backend and accelerator."""

from pathlib import Path

import pytest

from hostnet.errors import VMError
from hostnet.image import ERROR_MARKER, GuestImage, init_script
from hostnet.vm import BACKEND_TAP, BACKEND_VHOST_USER, VM, GuestTuning, NicSpec, VMConfig, nic_vectors

IMAGE = GuestImage(kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"))


def _vm(**overrides) -> VM:
    config = VMConfig(name="g0", image=IMAGE, **overrides)
    return VM(config, Path("/run/hn/x"))


def _value_after(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_tap_nic_single_queue_uses_default_vectors_and_no_mq():
    nic = NicSpec(BACKEND_TAP, "net0", "52:54:00:00:00:01", 1, ifname="tap-g0")
    argv = _vm(nics=[nic])._argv()
    assert "tap,id=net0,ifname=tap-g0,script=no,downscript=no,vhost=off" in _value_after(argv, "-netdev")
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01" in _value_after(argv, "-device")


def test_tap_multiqueue_sets_queues_mq_and_msix_vectors():
    nic = NicSpec(BACKEND_TAP, "net0", "52:54:00:00:00:01", 4, ifname="tap-g0", vhost_net=True)
    argv = _vm(nics=[nic], vcpus=4)._argv()
    assert _value_after(argv, "-netdev") == ["tap,id=net0,ifname=tap-g0,script=no,downscript=no,vhost=on,queues=4"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,mq=on,vectors=10" in _value_after(argv, "-device")
    assert _value_after(argv, "-smp") == ["4"]


def test_vhost_user_under_tcg_uses_intx_and_shared_hugepage_memory():
    nic = NicSpec(BACKEND_VHOST_USER, "net0", "52:54:00:00:00:02", 2, socket_path=Path("/run/hn/x/g0.vhu"))
    argv = _vm(nics=[nic], accel="tcg", hugepage_dir=Path("/run/hn/x/huge"))._argv()
    assert "socket,id=chr-net0,path=/run/hn/x/g0.vhu,server=on" in _value_after(argv, "-chardev")
    assert _value_after(argv, "-netdev") == ["vhost-user,id=net0,chardev=chr-net0,queues=2"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:02,mq=on,vectors=0" in _value_after(argv, "-device")
    backend = _value_after(argv, "-object")[0]
    assert "mem-path=/run/hn/x/huge" in backend and "share=on" in backend
    assert _value_after(argv, "-numa") == ["node,memdev=mem0"]


def test_vhost_user_under_kvm_uses_msix():
    nic = NicSpec(BACKEND_VHOST_USER, "net0", "m", 2, socket_path=Path("/s"))
    assert nic_vectors(nic, "kvm") == 6
    assert nic_vectors(nic, "tcg") == 0
    argv = _vm(nics=[nic], accel="kvm")._argv()
    assert _value_after(argv, "-accel") == ["kvm"] and _value_after(argv, "-cpu") == ["host"]


def test_kernel_cmdline_carries_guest_network_settings():
    nic = NicSpec(BACKEND_TAP, "net0", "m", 2, ifname="t")
    vm = _vm(nics=[nic], guest_ip="10.66.0.10/24", gateway="10.66.0.1", tcp_buffer_max=6 << 20)
    append = _value_after(vm._argv(), "-append")[0]
    for part in (
        "console=ttyS0",
        "hostnet.ip=10.66.0.10/24",
        "hostnet.gw=10.66.0.1",
        "hostnet.queues=2",
        "hostnet.name=g0",
        "hostnet.tcp_buffer_max=6291456",
    ):
        assert part in append.split()
    # None: the guest keeps the kernel's buffer sizes, nothing on the command line.
    assert "hostnet.tcp_buffer_max" not in _value_after(_vm(nics=[nic])._argv(), "-append")[0]


def test_init_script_sets_tcp_buffer_max_keeping_min_and_default():
    script = init_script()
    assert "hostnet.tcp_buffer_max=*) TCPBUF=${arg#hostnet.tcp_buffer_max=} ;;" in script
    for path in (
        "/proc/sys/net/ipv4/tcp_rmem",
        "/proc/sys/net/ipv4/tcp_wmem",
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/wmem_max",
    ):
        assert path in script
    assert 'echo "$1 $d $TCPBUF" > $f' in script  # kernel's min, its default (capped), new max
    assert ERROR_MARKER in script and "__ERROR__" not in script


def test_guest_tuning_records_the_tcp_buffer_max_asked_for():
    assert GuestTuning().as_dict()["tcp_buffer_max"] == 16 << 20  # the measured default
    assert GuestTuning(tcp_buffer_max=None).as_dict()["tcp_buffer_max"] == "kernel default"
    assert GuestTuning(tcp_buffer_max=6 << 20).as_dict()["tcp_buffer_max"] == 6291456


def test_incoming_guest_waits_for_deferred_migration():
    argv = _vm(incoming=True)._argv()
    assert argv[-2:] == ["-incoming", "defer"]


def test_disk_image_boots_from_a_snapshot_drive_without_kernel():
    vm = VM(VMConfig(name="d", image=GuestImage(disk=Path("/img/debian.qcow2"))), Path("/r"))
    argv = vm._argv()
    assert "-kernel" not in argv
    assert _value_after(argv, "-drive") == ["file=/img/debian.qcow2,if=virtio,snapshot=on"]


def test_unknown_backend_is_rejected():
    with pytest.raises(VMError, match="unknown NIC backend"):
        _vm(nics=[NicSpec("macvtap", "net0", "m")])._argv()


def test_ring_sizes_mergeable_buffers_cpu_model_and_thread_names_reach_qemu():
    nic = NicSpec(
        BACKEND_VHOST_USER,
        "net0",
        "52:54:00:00:00:02",
        1,
        socket_path=Path("/run/hn/x/g0.vhu"),
        rx_queue_size=1024,
        tx_queue_size=1024,
        mrg_rxbuf=False,
    )
    argv = _vm(nics=[nic], accel="tcg", cpu_model="qemu64", hugepage_dir=Path("/h"))._argv()
    assert _value_after(argv, "-device")[-1].endswith("vectors=0,rx_queue_size=1024,tx_queue_size=1024,mrg_rxbuf=off")
    assert _value_after(argv, "-cpu") == ["qemu64"]
    assert _value_after(argv, "-name") == ["g0,debug-threads=on"]
    assert _value_after(_vm(accel="kvm", cpu_model="qemu64")._argv(), "-cpu") == ["host"]
