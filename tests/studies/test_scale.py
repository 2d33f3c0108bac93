"""`bench scale` end to end at tiny sizes: every point and curve present, the growth named from the points."""

import json

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from studies.scale import growth

ACTIVATION_MEASURES = {"get", "list_200", "list_200_name", "count", "count_name"}
OBJECT_MEASURES = {"put", "get", "head", "list_first_page", "list_middle_page"}
GROWTHS = {"falls", "flat", "sublinear", "linear", "worse"}


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ([5.0, 5.2, 4.9], "flat"),
        ([1.0, 10.0, 100.0], "linear"),
        ([1.0, 100.0, 10_000.0], "worse"),
        ([100.0, 30.0, 10.0], "falls"),  # exponent -0.5
        ([10.0, 7.0, 5.0], "flat"),  # exponent -0.15: within noise of flat
    ],
)
def test_growth_is_named_from_the_fitted_exponent(values, name):
    fitted = growth([1000, 10_000, 100_000], values)
    assert fitted["growth"] == name and fitted["size_ratio"] == 100.0
    assert fitted["last_over_first"] == round(values[-1] / values[0], 2)


def test_bench_scale_tiny_run(tmp_path):
    out = tmp_path / "scale.json"
    args = [
        "bench",
        "scale",
        "--parts",
        "records,objects",
        "--records",
        "20,200",
        "--objects",
        "20,200",
        "--samples",
        "2",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["benchmark"] == "scale"
    activations, objects = report["activations"], report["objects"]
    assert [p["n"] for p in activations["points"]] == [20, 200] == [p["n"] for p in objects["points"]]
    for point in activations["points"]:
        assert all(point[m]["n"] == 2 for m in ACTIVATION_MEASURES)
        assert point["start_s"] > 0 and point["disk_bytes_per_record"] > 0
    for point in objects["points"]:
        assert all(point[m]["n"] == 2 for m in OBJECT_MEASURES)
        assert point["start_s"] > 0 and point["rss_kb_after_start"] > 0
    assert set(activations["curves"]) == {f"{m}_p50_ms" for m in ACTIVATION_MEASURES} | {
        "start_s",
        "disk_bytes_per_record",
    }
    assert set(objects["curves"]) == {f"{m}_p50_ms" for m in OBJECT_MEASURES} | {
        "start_s",
        "rss_kb_after_start",
        "rss_kb_after_requests",
    }
    assert {c["growth"] for s in (activations, objects) for c in s["curves"].values()} <= GROWTHS


def test_bench_scale_refuses_a_bad_size():
    result = CliRunner().invoke(cli, ["bench", "scale", "--records", "0"])
    assert result.exit_code == 2 and "--records" in result.output


def test_bench_scale_tiny_run_of_invokes_actions_and_sizes(tmp_path):
    out, figures = tmp_path / "scale.json", tmp_path / "figures"
    args = ["bench", "scale", "--parts", "invokes,actions,sizes", "--concurrency", "1,4", "--requests", "3"]
    args += ["--actions", "5,50", "--samples", "2", "--sizes", "1000,3000000", "--json", str(out)]
    result = CliRunner().invoke(cli, [*args, "--figures", str(figures)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    invokes = report["invokes"]
    assert [p["n"] for p in invokes["points"]] == [1, 4]
    assert all(p["errors"] == 0 and p["statuses"] == {"200": p["answered"]} for p in invokes["points"])
    assert [p["n"] for p in report["actions"]["points"]] == [5, 50]
    sizes = report["object_sizes"]["points"]
    assert [p["n"] for p in sizes] == [1000, 3_000_000] and all(p["peak_rss_kb_after_get"] > 0 for p in sizes)
    assert {
        c["growth"]
        for s in ("invokes", "actions", "object_sizes")
        for c in report[s]["curves"].values()
        if "growth" in c
    } <= GROWTHS
    assert sorted(p.name for p in figures.iterdir())[0] == "actions-list_first_page.png"
