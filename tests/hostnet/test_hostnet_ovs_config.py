"""OVS-DPDK configuration: what goes into the private database."""

from pathlib import Path

import pytest

from hostnet.errors import OvsError
from hostnet.ovs import OvsSettings, add_bridge_args, dpdk_other_config, other_config_args, vhost_user_port_args


def test_dpdk_config_never_probes_pci_and_keeps_to_its_own_hugepages():
    config = dpdk_other_config(
        OvsSettings(socket_mem_mb=512, pmd_cpu_mask=0x2, tso=True), Path("/run/hn/a/huge"), "hostnet-a"
    )
    assert config["dpdk-init"] == "true"
    assert config["dpdk-socket-mem"] == "512"
    extra = config["dpdk-extra"].split()
    assert "--no-pci" in extra
    assert "--huge-dir=/run/hn/a/huge" in extra and "--file-prefix=hostnet-a" in extra
    assert config["pmd-cpu-mask"] == "0x2"
    assert config["userspace-tso-enable"] == "true"


def test_tso_off_and_pmd_cores_are_recorded():
    settings = OvsSettings(pmd_cpu_mask=0x6, tso=False)
    assert settings.pmd_cores() == [1, 2]
    assert dpdk_other_config(settings, Path("/h"), "p")["userspace-tso-enable"] == "false"


def test_other_config_values_are_quoted_for_ovs_vsctl():
    args = other_config_args({"dpdk-extra": "--no-pci --huge-dir=/h"})
    assert args == ["set", "Open_vSwitch", ".", 'other_config:dpdk-extra="--no-pci --huge-dir=/h"']


def test_bridge_uses_the_userspace_datapath():
    assert add_bridge_args("br-lab") == ["add-br", "br-lab", "--", "set", "Bridge", "br-lab", "datapath_type=netdev"]


def test_vhost_user_port_is_a_client_of_qemus_socket_with_rx_queues():
    args = vhost_user_port_args("br-lab", "vhu-g0", Path("/run/hn/a/g0.vhu"), 4)
    assert args[:3] == ["add-port", "br-lab", "vhu-g0"]
    assert "type=dpdkvhostuserclient" in args
    assert "options:vhost-server-path=/run/hn/a/g0.vhu" in args
    assert "options:n_rxq=4" in args


def test_zero_rx_queues_is_rejected():
    with pytest.raises(OvsError, match="n_rxq"):
        vhost_user_port_args("b", "p", Path("/s"), 0)
