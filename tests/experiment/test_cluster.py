"""Multi-node: a head with no CPUs and three one-CPU workers; a worker dies mid-trial."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from parity_ray import results
from parity_ray.tune.experiment import TuneOptions, run_experiment
from parity_ray.storage import is_shared
from tests.conftest import REPO, own_ray

SLOW = json.dumps({"cls": "tests.experiment.faulty.SlowMLP", "delay_s": 0.05})
EPOCHS = 20


@pytest.fixture(scope="module")
def cluster():
    """One cluster for the module (the session's Ray steps aside for it): a head with no CPUs and
    three one-CPU workers. A test that removes a worker adds a fresh one back (``replace_node``)."""
    import ray
    from ray.cluster_utils import Cluster

    with own_ray():
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        workers = [cluster.add_node(num_cpus=1) for _ in range(3)]
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        try:
            yield cluster, workers
        finally:
            ray.shutdown()
            cluster.shutdown()


def replace_node(cluster, workers, victim) -> None:
    workers.remove(victim)
    workers.append(cluster.add_node(num_cpus=1))
    cluster.wait_for_nodes()


def _busy_workers(workers):
    """Worker node ids whose only CPU is taken (the state API needs a dashboard; this does not)."""
    from ray._private.state import available_resources_per_node

    free = available_resources_per_node()
    return {w.node_id for w in workers if free.get(w.node_id, {}).get("CPU", 0) < 1}


@pytest.mark.cluster
@pytest.mark.slow
def test_trials_spread_and_survive_a_dead_worker(tmp_path, cluster):
    cluster, workers = cluster
    killed = {}

    def kill_a_busy_worker():
        deadline = time.time() + 120
        while time.time() < deadline:
            busy = _busy_workers(workers)
            checkpoints = list(tmp_path.glob("spread/*/checkpoint_*"))
            if len(busy) == 2 and len(checkpoints) >= 2:
                victim = next(w for w in workers if w.node_id in busy)
                killed["node"] = victim.node_id
                killed["busy"] = busy
                killed["victim"] = victim
                cluster.remove_node(victim)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    # 20 epochs, each slowed to about half a second (SlowMLP): time to remove a node mid-trial
    opts = TuneOptions(space="quick", name="spread", storage=str(tmp_path), max_failures=3, progress=False,
                       overrides=["dataset=digits", "base_epochs=5", "encoder=addition", "k=[2,3]", f"epochs={EPOCHS}",
                                  f"parity_model={SLOW}"])
    try:
        run_experiment(opts, log=lambda _m: None)
    finally:
        killer.join(timeout=5)
        if "victim" in killed:
            replace_node(cluster, workers, killed["victim"])
    assert "node" in killed, "no worker was killed: the trials never ran on two nodes at once"
    assert len(killed["busy"]) == 2  # the two trials ran on different nodes

    tables = results.load(opts.uri)
    runs, epochs = tables.runs, tables.epochs
    assert list(runs.status) == ["COMPLETED", "COMPLETED"]
    assert killed["node"] not in set(runs.node_id)  # the interrupted trial finished elsewhere
    assert not epochs.duplicated(["run_id", "epoch", "split", "metric"]).any()
    for run_id, group in epochs.groupby("run_id"):
        assert sorted(group.epoch.unique()) == list(range(1, EPOCHS + 1)), run_id


def test_node_local_storage_is_refused_on_a_multi_host_cluster(tmp_path):
    from parity_ray.tune.experiment import storage_problem

    assert storage_problem({"10.0.0.1", "10.0.0.2"}, str(tmp_path)) is not None
    assert storage_problem({"10.0.0.1"}, str(tmp_path)) is None
    assert storage_problem({"10.0.0.1", "10.0.0.2"}, "s3://bucket/prefix") is None
    assert is_shared("s3://bucket/x") and not is_shared(str(tmp_path))


@pytest.mark.cluster
@pytest.mark.slow
def test_simulation_replicas_sit_on_different_nodes(tmp_path, cluster):
    """Each of the k + r replicas of a coded simulation gets its own worker node (failure domain)."""
    import json

    from parity_ray.actors.simulation import SimulationOptions, run_simulation

    cluster, workers = cluster
    opts = TuneOptions(space="quick", name="placed", storage=str(tmp_path), progress=False,
                       overrides=["dataset=digits", "base_epochs=5", "encoder=addition", "k=2", "epochs=5"])
    run_experiment(opts, log=lambda _m: None)
    options = SimulationOptions(experiment=opts.uri, modes=["coded"], rate=20, queries=30, warmup=5,
                                deadline_ms=200, cpus_per_replica=0.5, progress=False)
    summary = run_simulation(options, log=lambda _m: None)
    nodes = json.loads(summary["modes"][0]["replica_nodes"])
    assert sorted(nodes) == ["base:0", "base:1", "parity:0"]
    assert len(set(nodes.values())) == 3 and set(nodes.values()) <= {w.node_id for w in workers}
    assert summary["modes"][0]["failed"] == 0
