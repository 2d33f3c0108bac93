"""Multiqueue configuration for a bigger host: one PMD and one rx queue per queue, vCPUs = queues."""

from pathlib import Path

import pytest

from hostnet.bench import BenchConfig, scaling_note
from hostnet.image import GuestImage
from hostnet.lab import guest_cores
from hostnet.ovs import OvsSettings, dpdk_other_config, pmd_mask_for, vhost_user_port_args
from hostnet.vm import BACKEND_TAP, BACKEND_VHOST_USER, VM, NicSpec, VMConfig

IMAGE = GuestImage(kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"))


def _argv(nic: NicSpec, accel: str, vcpus: int) -> list[str]:
    return VM(
        VMConfig(name="g0", image=IMAGE, accel=accel, vcpus=vcpus, nics=[nic], hugepage_dir=Path("/h")),
        Path("/run/hn/x"),
    )._argv()


def _after(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize("queues", [1, 2, 4, 8])
def test_vhost_user_queues_on_a_host_with_cores_to_spare(queues):
    cores = 16
    settings = OvsSettings(pmd_cpu_mask=pmd_mask_for(queues, cores))
    assert settings.pmd_cores() == list(range(1, queues + 1))
    assert dpdk_other_config(settings, Path("/h"), "p")["pmd-cpu-mask"] == hex(settings.pmd_cpu_mask)
    port = vhost_user_port_args("br", "vhu-g0", Path("/s"), queues, settings.rxq_affinity_for(queues))
    assert f"options:n_rxq={queues}" in port
    pinned = [f"{q}:{q + 1}" for q in range(queues)]
    assert f'other_config:pmd-rxq-affinity="{",".join(pinned)}"' in port
    vcpus = BenchConfig().vcpus_for(queues)
    assert vcpus == queues
    nic = NicSpec(BACKEND_VHOST_USER, "net0", "52:54:00:00:00:01", queues, socket_path=Path("/s"))
    argv = _argv(nic, "kvm", vcpus)
    assert _after(argv, "-smp") == [str(queues)]
    netdev, device = _after(argv, "-netdev")[0], _after(argv, "-device")[-1]
    if queues == 1:
        assert "queues=" not in netdev and "mq=on" not in device
    else:
        assert netdev.endswith(f",queues={queues}")
        assert f",mq=on,vectors={2 * queues + 2}" in device
    assert scaling_note(queues, vcpus, settings, cores) is None


@pytest.mark.parametrize("queues", [1, 2, 4, 8])
def test_on_two_cores_queues_share_one_pmd_and_the_output_says_why(queues):
    settings = OvsSettings(pmd_cpu_mask=pmd_mask_for(queues, 2))
    assert settings.pmd_cores() == [1]
    assert settings.rxq_affinity_for(queues) == ",".join(f"{q}:1" for q in range(queues))
    note = scaling_note(queues, queues, settings, 2)
    if queues == 1:
        assert note is None
    else:
        assert f"{queues} rx queues share 1 PMD core(s)" in note
        assert "add no parallel work" in note


@pytest.mark.parametrize("queues", [1, 2, 4, 8])
def test_tap_queues_and_tcg_keep_intx_for_vhost_user(queues):
    tap = NicSpec(BACKEND_TAP, "net0", "52:54:00:00:00:01", queues, ifname="tap-g0")
    device = _after(_argv(tap, "tcg", queues), "-device")[-1]
    assert ("mq=on" in device) == (queues > 1)
    vhu = NicSpec(BACKEND_VHOST_USER, "net0", "52:54:00:00:00:01", queues, socket_path=Path("/s"))
    assert _after(_argv(vhu, "tcg", queues), "-device")[-1].endswith("vectors=0")


def test_a_polling_pmd_core_is_kept_from_the_guests_and_a_sleeping_one_is_shared():
    polling = OvsSettings(pmd_cpu_mask=0x2, pmd_max_sleep_us=0)
    assert guest_cores("vhost-user", polling, 2) == [0]
    assert guest_cores("vhost-user", OvsSettings(pmd_cpu_mask=0x2, pmd_max_sleep_us=200), 2) == [0, 1]
    assert guest_cores("virtio-net", polling, 2) == [0, 1]


def test_one_core_host_still_gets_a_pmd():
    assert pmd_mask_for(4, 1) == 0x1
