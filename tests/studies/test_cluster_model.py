"""The cluster model's arithmetic on parts chosen so each phase can be counted by hand."""

import dataclasses
import json
import math

import pytest
from click.testing import CliRunner

from deployer.cli import cli
from studies import cluster_model as cm

# 1 s a request, 1 byte/s, one request at a time, unlimited link: a phase's seconds are its requests plus its bytes
UNIT = cm.Parts(
    latency_s=1.0,
    request_bps=1.0,
    nic_bps=math.inf,
    parallel_requests=1,
    step_s=10.0,
    update_bytes=4,
    reduce_bps=math.inf,
    invoke_s=0.5,
)


@pytest.mark.parametrize(
    ("topology", "storage_s"),
    [
        # PUT 1 x 4 bytes (5 s), GET 3 x 4 bytes (15 s)
        ("allreduce", 5 + 15),
        # PUT the 3 shards the peers reduce, 1 byte each (6 s), GET 3 (6 s), PUT 1 (2 s), GET 3 (6 s)
        ("scatter", 6 + 6 + 2 + 6),
        # PUT 1 x 4 (5 s), the PS GETs 4 x 4 (20 s) and PUTs 1 x 4 (5 s), GET 1 x 4 (5 s)
        ("ps", 5 + 20 + 5 + 5),
    ],
)
def test_a_round_is_compute_then_the_storage_phases_counted_by_hand(topology, storage_s):
    got = cm.round_s(UNIT, topology, 4)
    assert got["storage_s"] == storage_s and got["round_s"] == 10 + storage_s


def test_parallel_requests_pay_one_latency_per_wave_and_share_the_link():
    parts = cm.Parts(latency_s=1.0, request_bps=10.0, nic_bps=20.0, parallel_requests=4)
    # 6 requests of 20 bytes: 2 waves; 4 x 10 B/s capped by the 20 B/s link
    assert cm.requests_s(parts, 6, 20) == 2 * 1.0 + 6 * 20 / 20.0


def test_a_finite_storage_service_bounds_the_phase():
    parts = cm.Parts(latency_s=0.0, request_bps=1e9, nic_bps=1e9, storage_bps=100.0, update_bytes=10, step_s=0.0)
    parts = cm.Parts(**{**parts.__dict__, "reduce_bps": math.inf})
    # allreduce on 10 machines: PUT 10 x 10 B, then GET 10 x 9 x 10 B, all through 100 B/s
    assert cm.round_s(parts, "allreduce", 10)["storage_s"] == pytest.approx(1.0 + 9.0)


def test_fedavg_on_openwhisk_runs_its_clients_in_waves_of_the_machines():
    got = cm.fedavg_openwhisk_round_s(UNIT, clients_per_round=10, machines=4, slots_per_machine=1, client_update_s=2.0)
    # 3 waves of (invoke 0.5 + GET weights, PUT update, parent's GET: 3 x 5 s + 2 s update); the parent's PUT first
    assert got["waves"] == 3 and got["round_s"] == 5 + 3 * (0.5 + 15 + 2.0)


def test_the_prediction_names_its_assumptions_and_reaches_64_machines():
    out = cm.predict(cm.Parts(), [1, 2, 4, 64])
    assert set(out["curves"]) == {"allreduce", "scatter", "ps", "fedavg-openwhisk"}
    assert all([p["n"] for p in c] == [1, 2, 4, 64] for c in out["curves"].values())
    assert len(out["assumptions"]) == len(cm.ASSUMPTIONS) == 8
    # every part says where it came from: a placeholder, an assumed default, or a value given
    assert set(out["parts_from"]) == set(out["parts"])
    assert out["parts_from"]["latency_s"].startswith("placeholder")
    assert out["parts_from"]["nic_bps"] == out["parts_from"]["step_s"] == "assumed (a Parts default)"
    given = cm.predict(cm.from_scale({}, step_s=0.01), [1])["parts_from"]
    assert given["step_s"] == "--step-s as given" and given["update_bytes"] == "assumed (a Parts default)"


def test_check_says_whether_within_the_tolerance():
    assert cm.check(1.2, 1.0)["within"] and not cm.check(1.3, 1.0)["within"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="topology"):
        cm.round_s(UNIT, "ring", 2)
    with pytest.raises(ValueError, match="at least 1"):
        cm.round_s(UNIT, "ps", 0)


UNIT_WITH_STEP = dataclasses.replace(UNIT, step_s=1.0)


def test_the_shared_host_differs_from_the_cluster_only_by_its_cores_and_its_endpoint():
    # 4 workers, 2 cores; 1 s of compute each; each request 1 s of wall, 0.25 s of client and 0.5 s of endpoint CPU
    parts = dataclasses.replace(
        UNIT,
        step_s=1.0,
        request_bps=math.inf,
        client_cpu={"put": cm.Cost(0.25), "get": cm.Cost(0.25)},
        endpoint_cpu={"put": cm.Cost(0.5), "get": cm.Cost(0.5)},
    )
    cluster = cm.round_s(parts, "allreduce", 4)
    shared = cm.round_s(parts, "allreduce", 4, cm.Host(cores=2))
    # cluster: 1 s compute, PUT 1 x 1 s, GET 3 x 1 s (one at a time)
    assert cluster["round_s"] == 1 + 1 + 3
    # shared: compute 4/2 x 1 s; PUT: 4 requests' endpoint CPU on its one core (2 s) beats 1 s and 3 s / 2 cores;
    # GET: 12 x 0.5 s on the endpoint's core (6 s)
    assert shared["compute_s"] == 2 and shared["storage_s"] == 2 + 6


def test_a_measured_exchange_floor_is_the_shared_hosts_exchange_and_the_cluster_ignores_it():
    # Prepare: parts whose requests would cost 4 s a round, and a measured 0.75 s floor for allreduce alone
    parts = dataclasses.replace(UNIT, step_s=1.0, exchange_s={"allreduce": 0.75})
    host = cm.Host(cores=2)
    # Execute
    floored, local = cm.round_s(parts, "allreduce", 4, host), cm.round_s(parts, "allreduce", 4, host, local_steps=3)
    # Assert: compute (4 workers on 2 cores) then the floor; a topology without one, and the cluster, use the parts
    assert floored == {"n": 4, "round_s": 2.0 + 0.75, "compute_s": 2.0, "exchange_s": 0.75}
    assert local["round_s"] == 3 * 2.0 + 0.75
    assert cm.round_s(parts, "ps", 4, host) == cm.round_s(UNIT_WITH_STEP, "ps", 4, host)
    assert cm.round_s(parts, "allreduce", 4) == cm.round_s(UNIT_WITH_STEP, "allreduce", 4)


def test_a_local_round_is_its_steps_then_one_exchange():
    one = cm.round_s(UNIT, "ps", 2)
    eight = cm.round_s(UNIT, "ps", 2, local_steps=8)
    assert eight["compute_s"] == 8 * one["compute_s"] and eight["storage_s"] == one["storage_s"]


def test_a_cost_line_is_fitted_through_its_sizes():
    fit = cm.Cost.fit([(0, 1.0), (10, 2.0), (20, 3.0)])
    assert fit.fixed_s == pytest.approx(1.0) and fit.at(30) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="2 different sizes"):
        cm.Cost.fit([(5, 1.0), (5, 2.0)])


def test_the_cli_says_which_parts_were_given_and_which_are_its_defaults(tmp_path):
    given, default = tmp_path / "given.json", tmp_path / "default.json"
    runner = CliRunner()
    assert runner.invoke(cli, ["bench", "model", "--step-s", "0.01", "--json", str(given)]).exit_code == 0
    assert runner.invoke(cli, ["bench", "model", "--json", str(default)]).exit_code == 0
    given_from, default_from = (json.loads(p.read_text())["parts_from"] for p in (given, default))
    assert given_from["step_s"] == "--step-s as given" and given_from["update_bytes"] == "assumed (a Parts default)"
    assert default_from["step_s"] == "assumed (a Parts default)"
