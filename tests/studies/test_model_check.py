"""The model check's arithmetic on hand-made points, and that its calibration never reads a checked point."""

import json
from pathlib import Path

import pytest

from studies import model_calibration
from studies import model_check as mc

DATA = Path(__file__).resolve().parents[2] / "docs" / "data"


def test_a_point_within_the_tolerance_and_one_outside():
    # Prepare: measured 1.0 s and 2.0 s; predicted 1.2 s (+20 %) and 1.4 s (-30 %)
    points = [{"point": "a", "measured_s": 1.0}, {"point": "b", "measured_s": 2.0}]

    # Execute
    rows = mc.check_points(points, [1.2, 1.4], tolerance=0.25)

    # Assert
    assert [(r["point"], r["error"], r["within"]) for r in rows] == [("a", 0.2, True), ("b", -0.3, False)]
    with pytest.raises(ValueError, match="2 points but 1"):
        mc.check_points(points, [1.0])


def test_the_table_says_which_points_are_outside():
    report = {
        "tolerance": 0.25,
        "points": mc.check_points([{"point": "p", "measured_s": 1.0}], [2.0]),
        "not_measured": [{"point": "q", "error": "out of memory"}],
        "within": 0,
        "calibration": {"step_s": "somewhere"},
    }
    text = mc.markdown(report)
    assert "| p | 1 | 2 | +100% | no |" in text and "| q | not measured |" in text and "- step_s: somewhere" in text


def _inputs():
    def read(name):
        return json.loads((DATA / name).read_text())

    train = {name: read(name) for name in ("bench-train.json", "bench-train-wide.json")}
    calibration, fedavg = read("model-check/calibration.json"), read("model-check/fedavg-timing.json")
    return train, calibration, read("bench-platform.json"), fedavg


def test_the_calibration_never_reads_a_checked_point():
    # Prepare: the committed inputs, and copies where every checked number is gone
    train, calibration, platform, fedavg = _inputs()
    blind_train, blind_fedavg = mc.without_checked_points(train, fedavg)

    # Execute
    seen = mc.calibrate(train, calibration, platform, fedavg)
    blind = mc.calibrate(blind_train, calibration, platform, blind_fedavg)

    # Assert: the same parts, and no checked point among the FedAvg calibration's labels
    assert seen == blind
    points = [p["point"] for p in mc.fedavg_points(fedavg, "f")]
    assert points and not any(mc.FEDAVG_SERIAL in p for p in points)


def test_a_calibrated_exchange_floor_becomes_each_worker_counts_shared_host_exchange():
    # Prepare: the committed calibration with a floor for lenet5 at 2 workers only
    train, calibration, platform, fedavg = _inputs()
    floor = {"lenet5": {"2": {t: {"wall_ms": ms} for t, ms in (("allreduce", 7.0), ("scatter", 13.0), ("ps", 15.0))}}}
    # Execute
    with_floor = mc.calibrate(train, dict(calibration, exchange_floor=floor), platform, fedavg)
    without = mc.calibrate(train, {k: v for k, v in calibration.items() if k != "exchange_floor"}, platform, fedavg)
    # Assert
    parts = with_floor["models"]["lenet5"]["parts"]
    assert parts[2].exchange_s == {"allreduce": 0.007, "scatter": 0.013, "ps": 0.015} and parts[4].exchange_s == {}
    point = {"kind": "train", "model": "lenet5", "workers": 2, "topology": "ps", "local_steps": 1.0}
    assert mc.predict_point(point, with_floor)["exchange_s"] == 0.015
    assert "exchange_s" not in mc.predict_point(point, without)
    assert "no compute" in with_floor["sources"]["exchange_s"] and "not calibrated" in without["sources"]["exchange_s"]


def test_every_committed_point_is_predicted_with_its_calibration_sources():
    train, calibration, platform, fedavg = _inputs()
    report = mc.run_check(train, calibration, platform, fedavg)
    rows = sum(len(r["rows"]) for r in train.values())
    assert len(report["points"]) + len(report["not_measured"]) == rows + 3
    assert all(p["predicted_s"] > 0 for p in report["points"])
    assert any("compute_floor" in v for v in report["calibration"].values())


def test_the_exchange_floors_run_each_topology_at_each_worker_count(monkeypatch):
    # Prepare: one small model, so the three topologies' rows stay a few seconds
    monkeypatch.setattr(model_calibration, "MODEL_PARAMS", {"tiny": 1_000})
    # Execute
    floors = model_calibration.exchange_floors((2,), steps=5)
    # Assert: what the check reads, per model, worker count and topology
    assert set(floors) == {"tiny"} and set(floors["tiny"]) == {"2"}
    rows = floors["tiny"]["2"]
    assert set(rows) == {"allreduce", "scatter", "ps"} and all(
        r["wall_ms"] > 0 and r["steps"] == 5 for r in rows.values()
    )
    assert rows["ps"]["requests"] >= 7 and rows["allreduce"]["requests"] >= 4
