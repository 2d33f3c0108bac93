"""The click commands: user mistakes are one line and a non-zero exit."""
from click.testing import CliRunner

from hostnet.cli import bench_command, hostnet_group


def test_group_lists_its_subcommands():
    result = CliRunner().invoke(hostnet_group, ["--help"])
    assert result.exit_code == 0
    for name in ("image", "up", "down", "bench", "migrate"):
        assert name in result.output


def test_unknown_backend_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["bench", "--backends", "virtio-net,sriov",
                                                "--json", "x.json"])
    assert result.exit_code == 2
    assert "unknown sriov" in result.output and "Traceback" not in result.output


def test_bad_queue_list_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["bench", "--queues", "1,zero", "--json", "x.json"])
    assert result.exit_code == 2 and "integers" in result.output


def test_missing_image_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(hostnet_group, ["migrate", "--json", str(tmp_path / "m.json"),
                                                "--image", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: guest image") and "Traceback" not in result.output


def test_bad_pmd_mask_is_a_usage_error():
    result = CliRunner().invoke(hostnet_group, ["migrate", "--json", "m.json",
                                                "--pmd-cpu-mask", "core1"])
    assert result.exit_code == 2 and "--pmd-cpu-mask" in result.output


def test_bench_command_is_named_for_deployer_bench():
    assert bench_command.name == "hostnet"
    result = CliRunner().invoke(bench_command, [])
    assert result.exit_code == 2 and "--json" in result.output
