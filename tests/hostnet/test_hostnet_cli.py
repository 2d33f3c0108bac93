"""The click commands: user mistakes are one line and a non-zero exit."""

import click
import pytest
from click.testing import CliRunner

from deployer.commands.hostnet import _tuned, bench_command, hostnet_group, parse_buffer_size


def test_group_lists_its_subcommands():
    result = CliRunner().invoke(hostnet_group, ["--help"])
    assert result.exit_code == 0
    for name in ("image", "up", "down", "bench", "migrate"):
        assert name in result.output


def test_unknown_backend_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["bench", "--backends", "virtio-net,sriov", "--json", "x.json"])
    assert result.exit_code == 2
    assert "unknown sriov" in result.output and "Traceback" not in result.output


def test_bad_queue_list_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["bench", "--queues", "1,zero", "--json", "x.json"])
    assert result.exit_code == 2 and "integers" in result.output


def test_missing_image_is_a_usage_error_naming_it(tmp_path):
    result = CliRunner().invoke(
        hostnet_group, ["migrate", "--json", str(tmp_path / "m.json"), "--image", str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert "'--image'" in result.output and "nope' does not exist" in result.output
    assert "Traceback" not in result.output


def test_bad_pmd_mask_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["migrate", "--json", "m.json", "--pmd-cpu-mask", "core1"])
    assert result.exit_code == 2 and "--pmd-cpu-mask" in result.output


def test_bench_command_is_named_for_deployer_bench():
    assert bench_command.name == "hostnet"
    result = CliRunner().invoke(bench_command, [])
    assert result.exit_code == 2 and "--json" in result.output


@pytest.mark.parametrize(
    "text,size",
    [
        ("6M", 6291456),
        ("6MiB", 6291456),
        ("16m", 16 << 20),
        ("1048576", 1048576),
        ("512K", 524288),
        ("0", None),
        ("default", None),
        ("kernel", None),
    ],
)
def test_tcp_buffer_max_takes_bytes_or_a_size(text, size):
    assert parse_buffer_size(text) == size


@pytest.mark.parametrize("text", ["6 MB?", "M", "4K", "2G", "-1"])
def test_bad_tcp_buffer_max_is_refused(text):
    with pytest.raises(click.BadParameter):
        parse_buffer_size(text)


def test_tcp_buffer_max_is_a_usage_error_on_every_guest_command():
    for command in (["bench", "--json", "x.json"], ["migrate", "--json", "x.json"], ["up"]):
        result = CliRunner().invoke(hostnet_group, [*command, "--tcp-buffer-max", "lots"])
        assert result.exit_code == 2 and "--tcp-buffer-max" in result.output, command


def test_tcp_buffer_max_reaches_the_guest_tuning():
    kw = {
        "pmd_cpu_mask": "0x2",
        "tso": True,
        "tx_flush_interval": 0,
        "pmd_max_sleep": 200,
        "rxq_affinity": True,
        "cpu_model": "qemu64",
        "rx_queue_size": 1024,
        "tx_queue_size": 1024,
        "mrg_rxbuf": None,
        "pin_vcpus": False,
        "tcp_buffer_max": 6 << 20,
    }
    _, guest = _tuned(kw)
    assert guest.tcp_buffer_max == 6 << 20 and kw == {}


def test_tcp_buffer_max_defaults_to_16m_on_every_guest_command():
    for name in ("bench", "migrate", "up"):
        option = next(p for p in hostnet_group.commands[name].params if p.name == "tcp_buffer_max")
        assert parse_buffer_size(option.default) == 16 << 20, name
