"""The ML actions in docker mode: each activation in the runtime image, results as in process mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer import training_driver as training
from deployer.manifest import deploy
from localwhisk.invoker import docker_container as dc
from localwhisk.invoker.factory import platform_id
from localwhisk.supervisor import LocalPlatform
from mlcore.storage import Storage
from mlcore.training import data as training_data
from mlcore.training.job import JobConfig

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
FEDAVG = Path(__file__).resolve().parents[2] / "manifests" / "fedavg.yaml"


@pytest.fixture(scope="module")
def docker_ml(runtime_image, tmp_path_factory, running_platform):
    state = tmp_path_factory.mktemp("docker-ml")
    with running_platform(LocalPlatform(state, containers="docker", max_containers=6, prewarm="none")) as handle:
        yield handle
    assert dc.leftovers(platform_id(state)) == {"containers": [], "networks": []}


@pytest.fixture(scope="module")
def small_mnist(mnist_root):
    from fedavg.run import load_data

    return load_data(train_limit=2000, test_limit=1000, root=mnist_root)


def _running_images(handle) -> set[str]:
    ids = dc.leftovers(platform_id(handle.owner.state_dir))["containers"]
    return {dc._docker("inspect", "--format", "{{.Config.Image}}", cid).stdout.strip() for cid in ids}


def test_a_fedavg_round_through_docker_containers_gives_the_serial_weights(docker_ml, small_mnist):
    import torch

    from fedavg.executors.openwhisk import OpenWhiskExecutor
    from fedavg.executors.serial import SerialExecutor
    from fedavg.run import RunConfig, run

    config = RunConfig(
        model="2nn", clients=4, frac=0.5, epochs=1, batch_size=10, lr=0.05, partition="shards", rounds=1, seed=5
    )
    deploy(docker_ml.client, FEDAVG, env=docker_ml.storage_env)
    torch.set_num_threads(1)  # as the clients in their containers: the same sums in the same order
    with SerialExecutor(small_mnist.train_images, small_mnist.train_labels, num_threads=1) as executor:
        expected, _ = run(config, executor, small_mnist)

    with OpenWhiskExecutor(
        docker_ml.client,
        Storage(docker_ml.storage_config),
        small_mnist.train_images,
        small_mnist.train_labels,
        run_id="docker-fedavg",
        concurrency=2,
        invoke_timeout_s=300,
    ) as executor:
        got, _ = run(config, executor, small_mnist)
    assert got["failed_clients"] == 0, got["rounds"]
    assert got["final_state_sha256"] == expected["final_state_sha256"]
    assert "deployer/action-python-ml:0.1.0" in _running_images(docker_ml)


def test_a_training_job_runs_in_containers_and_ends_as_in_process_mode(docker_ml, platform, mnist_root):
    # the same job on both container modes: the process-mode platform of the session, and Docker
    config = JobConfig(
        job="both-modes",
        workers=2,
        epochs=2,
        batch_size=64,
        lr=0.1,
        train_limit=2048,
        test_limit=1000,
        eval_every=16,
        mode="sync",
        precision="fp32",
        compress="none",
    )
    accuracy = {}
    for name, handle in (("process", platform), ("docker", docker_ml)):
        storage = Storage(handle.storage_config)
        deploy(handle.client, training.MANIFEST, env={**os.environ, **handle.storage_env})
        training_data.upload_mnist(storage, mnist_root)
        activation = training.start(handle.client, config)
        list(
            training.follow(handle.client, storage, config.job, poll_s=0.5, timeout_s=900, first_activation=activation)
        )
        summary = training.report(handle.client, storage, config.job)
        assert summary["state"] == "done" and summary["gb_s"]["coordinator"] > 0, name
        accuracy[name] = summary["final_accuracy"]
    assert accuracy["docker"] > 0.5 and abs(accuracy["docker"] - accuracy["process"]) <= 0.005, accuracy
    assert "deployer/action-python-ml:0.1.0" in _running_images(docker_ml)
