"""The FedSGD comparison: rounds to one common accuracy, as the paper's Table 2 speed-ups."""

from fedavg.bench import PAPER_ROUNDS_TO_99, compare_to_fedsgd, fedsgd_config
from fedavg.run import RunConfig


def test_speedup_is_taken_at_the_lower_of_the_two_best_accuracies():
    fedavg = {"iid": {"accuracy": [0.90, 0.95, 0.97, 0.99]}, "shards": {"accuracy": [0.5, 0.7]}}
    fedsgd = {
        "iid": {"accuracy": [0.2, 0.6, 0.8, 0.9, 0.94, 0.95, 0.93]},
        "shards": {"accuracy": [0.3, 0.4, 0.6, 0.75, 0.8]},
    }
    out = compare_to_fedsgd(fedavg, fedsgd)
    assert out["iid"]["accuracy_level"] == 0.95
    assert (out["iid"]["fedsgd_rounds"], out["iid"]["fedavg_rounds"], out["iid"]["speedup"]) == (6, 2, 3.0)
    assert out["iid"]["fedsgd_rounds_run"] == 7
    assert out["iid"]["paper_speedup_at_99"] == PAPER_ROUNDS_TO_99["iid"]["fedsgd"] / 20
    # FedAvg's budget ended below FedSGD's best: the level is FedAvg's best.
    assert out["shards"]["accuracy_level"] == 0.7
    assert (out["shards"]["fedsgd_rounds"], out["shards"]["fedavg_rounds"]) == (4, 2)


def test_partitions_without_both_curves_are_left_out():
    assert (
        compare_to_fedsgd({"iid": {"accuracy": []}}, {"iid": {"accuracy": [0.5]}, "shards": {"accuracy": [0.4]}}) == {}
    )


def test_fedsgd_is_one_epoch_on_the_whole_local_set():
    base = RunConfig(epochs=5, batch_size=10, lr=0.05)
    sgd = fedsgd_config(base)
    assert (sgd.epochs, sgd.batch_size, sgd.lr) == (1, None, 0.05)
    assert fedsgd_config(base, 0.2).lr == 0.2
    assert sgd.run_id() != base.run_id()
