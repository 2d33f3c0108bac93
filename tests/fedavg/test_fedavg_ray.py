"""The ray executor: serial's weights and a node lost mid-round on a two-node Ray cluster on loopback, a private
Ray that stays on loopback and leaves nothing behind, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import select
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray executor is an optional extra: pip install '.[ray]' (./run does)")

from click.testing import CliRunner  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from deployer.cli import cli  # noqa: E402
from fedavg.core import ClientConfig, ClientFailure, ClientTask, client_seed, fedavg, initial_state  # noqa: E402
from fedavg.executors.ray import RayExecutor, Worker  # noqa: E402
from fedavg.executors.serial import SerialExecutor  # noqa: E402
from fedavg.partition import make_partition  # noqa: E402
from fedavg.run import RunConfig, run  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SMALL = RunConfig(
    model="2nn", clients=4, frac=1.0, epochs=1, batch_size=10, lr=0.05, partition="iid", rounds=2, seed=11
)


@pytest.fixture(scope="module")
def cluster():
    """A head and one more node, each with its own raylet and object store, all on 127.0.0.1.

    Each node offers 2 CPUs, so the head alone can host both workers once the other node is gone.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        nodes = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False},
        )
        try:
            nodes.add_node(num_cpus=2, node_ip_address="127.0.0.1")
            nodes.wait_for_nodes()
            yield nodes
        finally:
            if ray.is_initialized():
                ray.shutdown()
            nodes.shutdown()


def node_ids(cluster) -> tuple[str, str]:
    """(head, other) node ids."""
    other = next(iter(cluster.worker_nodes))
    return cluster.head_node.node_id, other.node_id


MAILBOX = "mailbox"


@ray.remote(num_cpus=0)
class Mailbox:
    """Holds the first message sent to it; wait() answers once there is one."""

    def __init__(self) -> None:
        self.messages: list = []
        self.arrived = asyncio.Event()

    async def send(self, message) -> None:
        self.messages.append(message)
        self.arrived.set()

    async def wait(self):
        await self.arrived.wait()
        return self.messages[0]


def stalling_on(node_id: str):
    """A Worker that, on the given node only, announces its client to the mailbox and then never finishes it."""

    class StallingWorker(Worker):
        def run(self, task, global_state):
            if ray.get_runtime_context().get_node_id() == node_id:
                ray.get(ray.get_actor(MAILBOX).send.remote(task.client_id))
                threading.Event().wait()
            return super().run(task, global_state)

    return StallingWorker


def test_two_nodes_give_the_serial_executors_weights(small_mnist, cluster):
    # Prepare
    config = dataclasses.replace(SMALL, clients=8, frac=0.5, partition="shards")
    with SerialExecutor(small_mnist.train_images, small_mnist.train_labels, num_threads=1) as serial:
        expected, expected_state = run(config, serial, small_mnist)
    # Execute
    with RayExecutor(
        small_mnist.train_images, small_mnist.train_labels, workers=2, ray_address=cluster.address
    ) as executor:
        nodes = executor.worker_nodes()
        got, got_state = run(config, executor, small_mnist)
        empty = executor.run_round([ClientTask(5, 3, 0, np.array([], dtype=np.int64), ClientConfig("2nn"))], got_state)
    # Assert: one worker per node, identical weights, and a client's own error is data
    assert sorted(nodes) == sorted(node_ids(cluster))
    assert got["final_state_sha256"] == expected["final_state_sha256"]
    assert all((got_state[k] == expected_state[k]).all() for k in expected_state)
    assert [r["test_acc"] for r in got["rounds"]] == [r["test_acc"] for r in expected["rounds"]]
    assert got["executor"] == "ray" and got["failed_clients"] == 0
    assert isinstance(empty[0], ClientFailure) and "no examples" in empty[0].error
    assert not ray.is_initialized()


def descendants() -> set[tuple[int, str]]:
    """(pid, command) of every live process started by this one, children of children included."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            fields = rest.rsplit(") ", 1)[1]
        except (OSError, ValueError):
            continue
        state, ppid = fields.split()[:2]
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(pid))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found.add((child, Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]))
            except OSError:
                continue
            todo.append(child)
    return found


def listening_addresses(pids) -> set:
    """The local addresses the given processes listen on (TCP, IPv4 and IPv6), from /proc."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                address = ipaddress.ip_address(words)
                found.add(getattr(address, "ipv4_mapped", None) or address)
    return found


def exited(pid: int, timeout_s: float = 60.0) -> bool:
    """Whether a process (not our child) ends within timeout_s: its pidfd turns readable when it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def test_a_private_ray_listens_on_loopback_only_and_stops_every_process_it_started(small_mnist):
    before = descendants()
    with RayExecutor(small_mnist.train_images, small_mnist.train_labels, workers=2) as executor:
        started = descendants() - before
        addresses = listening_addresses(pid for pid, _ in started)
        nodes = executor.worker_nodes()
    assert any("raylet" in command for _, command in started) and len(set(nodes)) == 1
    assert addresses and all(a.is_loopback for a in addresses), addresses
    assert not ray.is_initialized()
    assert [command for pid, command in started if not exited(pid)] == []


def test_cli_runs_on_a_cluster_and_says_in_one_line_when_none_answers(tmp_path, mnist_root, cluster):
    args = [
        "fedavg",
        "run",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--model",
        "2nn",
        "--clients",
        "4",
        "--frac",
        "0.5",
        "--epochs",
        "1",
        "--rounds",
        "2",
        "--train-limit",
        "800",
        "--test-limit",
        "300",
        "--seed",
        "3",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    result = CliRunner().invoke(
        cli, [*args, "--ray-address", cluster.address, "--json", str(tmp_path / "r.json")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["executor"] == "ray" and report["rounds_done"] == 2 and report["failed_clients"] == 0
    assert not ray.is_initialized()
    refused = CliRunner().invoke(cli, [*args, "--ray-address", "127.0.0.1:1"])
    assert refused.exit_code == 1
    assert "nothing answers at 127.0.0.1:1" in refused.output and "Traceback" not in refused.output


def test_a_node_lost_mid_round_fails_its_client_and_the_next_round_runs_on_the_rest(small_mnist, cluster):
    # Prepare: the worker on the other node stalls on its first client, so removing the node lands mid-client
    head, other = node_ids(cluster)
    victim = next(iter(cluster.worker_nodes))
    with (
        RayExecutor(
            small_mnist.train_images,
            small_mnist.train_labels,
            workers=2,
            ray_address=cluster.address,
            worker_cls=stalling_on(other),
        ) as executor,
        ThreadPoolExecutor(1) as driver,
    ):
        assert sorted(executor.worker_nodes()) == sorted([head, other])
        mailbox = Mailbox.options(
            name=MAILBOX, scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
        ).remote()
        # Execute
        running = driver.submit(run, SMALL, executor, small_mnist)
        try:
            stalled = ray.get(mailbox.wait.remote(), timeout=120)  # the timeout only guards against a hang
        finally:
            cluster.remove_node(victim)  # which also ends the stall, whatever happened
        report, state = running.result()
        after = executor.worker_nodes()
    assert not ray.is_initialized()
    # Assert: round 1 lost exactly the stalled client and averaged the others; round 2 ran every client
    first, second = report["rounds"]
    assert first["clients"] == [0, 1, 2, 3]
    assert [f["client"] for f in first["failed"]] == [stalled]
    assert "lost" in first["failed"][0]["error"] and other in first["failed"][0]["error"]
    assert second["failed"] == [] and report["failed_clients"] == 1
    assert other not in after
    parts = make_partition("iid", small_mnist.train_labels.numpy(), 4, SMALL.seed)
    client_config = SMALL.client_config()
    expected = initial_state(SMALL.model, SMALL.seed)
    with SerialExecutor(small_mnist.train_images, small_mnist.train_labels, num_threads=1) as serial:
        for round_index, clients in ((1, [k for k in range(4) if k != stalled]), (2, range(4))):
            tasks = [
                ClientTask(k, round_index, client_seed(SMALL.seed, round_index, k), parts[k], client_config)
                for k in clients
            ]
            expected = fedavg(serial.run_round(tasks, expected))
    assert all((state[k] == expected[k]).all() for k in expected)
