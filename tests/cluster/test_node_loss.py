"""A node that vanishes mid-job (a spot instance reclaimed, a pod evicted), on a multi-node Ray
cluster simulated on one machine as Ray's own tests do (`ray.cluster_utils.Cluster`: a head and
two worker nodes, each its own raylet and object store; removing one kills its processes, its
actors and its objects). Issue #17."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch

from avatar_platform.formats.dataset_card import read_card, verify_shards
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.spec import plan

LOOPBACK = "127.0.0.1"


def _cluster(head_cpus: int, worker_cpus: int):
    """A head with `head_cpus` and two worker nodes with `worker_cpus` each, all on loopback;
    yields (cluster, worker nodes) and shuts it down."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": head_cpus, "node_ip_address": LOOPBACK, "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=worker_cpus, node_ip_address=LOOPBACK) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


@pytest.fixture
def cluster():
    """A head without CPUs (nothing but the control plane runs there: every task and actor is on
    a worker node) and two worker nodes with three CPUs each: the node left can hold both image
    actors and still run the read and write tasks (with two CPUs, the actors starved them)."""
    yield from _cluster(0, 3)


def _actor_nodes(cluster, class_name: str) -> set[str]:
    """Node ids of the live actors whose class name contains `class_name` (from the GCS)."""
    table = cluster.global_state.actor_table(actor_id=None, job_id=None, actor_state_name="ALIVE")
    return {
        actor["Address"]["NodeID"]
        for actor in table.values()
        if class_name in actor.get("ActorClassName", "") and actor.get("Address")
    }


@pytest.mark.cluster
def test_generate_finishes_when_a_worker_node_is_lost(cluster, tmp_path):
    cluster, workers = cluster
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "avatar_platform.cli.app", "generate", "--preset", "tiny"]
    command += ["--num-images", "320", "--resolution", "96", "--workers", "2", "--out", str(out)]
    command += ["--ray-address", cluster.address, "--no-track", "--no-preview"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        # wait until image actors run and the first parts are written, then remove a node that
        # holds an image actor
        while True:
            assert driver.poll() is None, driver.stderr.read()[-3000:]
            assert time.monotonic() - started < 240, "no part was written in 240 s"
            if len(list((out / "data").glob("part-*.parquet"))) >= 1:
                break
            time.sleep(0.2)
        nodes = _actor_nodes(cluster, "ImageGenerator")
        victim = next((w for w in workers if w.node_id in nodes), workers[0])
        assert victim.node_id in nodes, f"no image actor on a worker node: {nodes}"
        written_before = len(list((out / "data").glob("part-*.parquet")))
        cluster.remove_node(victim, allow_graceful=False)
        assert not (out / "dataset.json").exists()  # nothing looks complete mid-job
        code = driver.wait(timeout=420)
        stderr = driver.stderr.read()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert code == 0, stderr[-3000:]
    card = read_card(out)
    ids = [
        sid for shard in card["shards"] for sid in pq.read_table(out / shard["file"])["sample_id"].to_pylist()
    ]
    config = GenerateConfig.model_validate(card["config"])
    assert len(ids) == len(set(ids)) == 320  # every planned sample exactly once
    assert set(ids) == set(plan(config)["sample_id"].to_pylist())
    assert verify_shards(out, card) == []
    assert written_before < len(card["shards"])  # the node was lost mid-job, not after it
    print(f"generate survived the loss of node {victim.node_id[:8]} in {time.monotonic() - started:.0f} s")


@pytest.fixture
def small_cluster():
    """A head and two worker nodes with one CPU each: two training workers cannot share a node,
    and one CPU stays free for Ray Data."""
    yield from _cluster(1, 1)


def _registered_step(storage) -> int:
    """The step of the latest checkpoint Ray Train's controller has registered (its snapshot in
    the run's storage folder), 0 if none yet."""
    import json

    snapshot = json.loads((storage / "checkpoint_manager_snapshot.json").read_text())
    return max((int(c["metrics"]["step"]) for c in snapshot["checkpoint_results"]), default=0)


def _cli(*args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "avatar_platform.cli.app", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.cluster
def test_train_gan_restarts_from_its_checkpoint_when_a_node_is_lost(small_cluster, tmp_path):
    import json

    import mlflow

    cluster, workers = small_cluster
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "", "AVATAR_HOME": str(tmp_path / "home")}
    data = tmp_path / "ds"
    made = _cli("generate", "--preset", "tiny", "--num-images", "32", "--out", str(data), "--ray-address",
                cluster.address, "--no-track", "--no-preview", env=env, timeout=240)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("gan: {checkpoint_every: 10, sample_every: 30, log_every: 5, fid_samples: 0}\n")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "avatar_platform.cli.app", "train", "gan", "--preset", "tiny"]
    command += ["--config", str(schedule), "--data", str(data), "--workers", "2", "--steps", "60"]
    command += ["--out", str(out), "--ray-address", cluster.address]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        # wait until Ray Train has registered a checkpoint (a worker writes it, the controller
        # takes it when it next polls the workers: a node lost in between restarts from scratch)
        # and training has gone past it
        step, kept = 0, 0
        while not (kept >= 10 and step > kept):
            assert driver.poll() is None, driver.stderr.read()[-3000:]
            assert time.monotonic() - started < 300, f"training reached step {step} in 300 s"
            with contextlib.suppress(OSError, ValueError, KeyError):  # not written yet, or mid-write
                step = json.loads((out / "progress.json").read_text())["step"]
                kept = _registered_step(out / "ray" / "train")
            time.sleep(0.2)
        assert kept < 60, "training finished before the node could be removed"
        nodes = _actor_nodes(cluster, "RayTrainWorker")
        victim = next(w for w in workers if w.node_id in nodes)  # one worker per node: one is here
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)  # a replacement node joins
        code = driver.wait(timeout=480)
        stdout, stderr = driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert code == 0, stderr[-3000:]
    state = torch.load(out / "model" / "training_state.pt", weights_only=True)
    assert state["step"] == 60
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(json.loads((out / "run.json").read_text())["tracking_uri"])
    resumed = mlflow.MlflowClient().get_metric_history(run_id, "resumed_from_step")
    assert resumed and all(kept <= m.value < 60 and m.value % 10 == 0 for m in resumed), resumed
    print(f"train gan survived the loss of node {victim.node_id[:8]} in {time.monotonic() - started:.0f} s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _replica_nodes(cluster) -> list[str]:
    return sorted(_actor_nodes_list(cluster, "ServeReplica:styleavatar3d:AvatarModel"))


def _actor_nodes_list(cluster, class_name: str) -> list[str]:
    table = cluster.global_state.actor_table(actor_id=None, job_id=None, actor_state_name="ALIVE")
    return [a["Address"]["NodeID"] for a in table.values() if class_name in a.get("ActorClassName", "")]


@pytest.mark.cluster
def test_serve_answers_through_the_loss_of_a_replicas_node_and_heals(cluster, tmp_path):
    import threading

    import requests

    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    cluster, workers = cluster
    model = tmp_path / "model"
    GanTrainer(resolve_config(GanTrainingConfig, "gan", "tiny")).save(model)
    settings = tmp_path / "serve.yaml"
    settings.write_text(
        "serve: {proxy_location: HeadOnly, num_cpus: 1, min_replicas: 2, max_replicas: 2, "
        "max_batch_size: 1, max_ongoing_requests: 2, max_queued_requests: 8, request_timeout_s: 60}\n"
    )
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "", "AVATAR_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "avatar_platform.cli.app", "serve", "--model", str(model)]
    command += [
        "--preset",
        "demo",
        "--config",
        str(settings),
        "--port",
        str(port),
        "--ray-address",
        cluster.address,
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 240
        while len(_replica_nodes(cluster)) < 2 or not _healthy(url):
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"no 2 replicas in 240 s: {_actor_names(cluster)}"
            time.sleep(0.5)
        replicas = _replica_nodes(cluster)
        assert len(set(replicas)) == 2  # one replica per worker node (one CPU each)
        ingress = set(_actor_nodes_list(cluster, "ServeReplica:styleavatar3d:AvatarIngress"))
        victim = next((w for w in workers if w.node_id in replicas and w.node_id not in ingress), None)
        assert victim is not None, "the ingress shares both replicas' nodes"

        answers: list[object] = []
        lock = threading.Lock()

        def client(seeds: range) -> None:
            for seed in seeds:
                body = {"seeds": [seed], "views": 1, "turntable": False}
                try:
                    response = requests.post(f"{url}/v1/avatars", json=body, timeout=90)
                    answer = (response.status_code, response.headers.get("Retry-After"))
                except requests.RequestException as err:  # a reset connection
                    answer = ("reset", type(err).__name__)
                with lock:
                    answers.append(answer)

        threads = [threading.Thread(target=client, args=(range(i * 10, i * 10 + 10),)) for i in range(4)]
        for thread in threads:
            thread.start()
        while len(answers) < 8:  # under load
            time.sleep(0.1)
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)  # room for the lost replica
        for thread in threads:
            thread.join(timeout=300)
        deadline = time.monotonic() + 120
        while len(_replica_nodes(cluster)) < 2:  # heals back to its replica count
            assert time.monotonic() < deadline, f"still {len(_replica_nodes(cluster))} replica(s) after 120 s"
            time.sleep(0.5)
        after = requests.post(
            f"{url}/v1/avatars", json={"seeds": [99], "views": 1, "turntable": False}, timeout=90
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    assert after.status_code == 201, after.text
    assert len(answers) == 40
    codes = [code for code, _ in answers]
    assert 500 not in codes, answers
    assert all(retry for code, retry in answers if code == 503), answers  # 503s say when to retry
    # what was in flight on the lost replica (its queue holds at most max_ongoing_requests = 2)
    lost = [a for a in answers if a[0] not in (201, 503, 504)]
    assert len(lost) <= 2, answers
    print(
        f"serve through the node loss: {sorted(set(codes), key=str)}: {[codes.count(c) for c in sorted(set(codes), key=str)]}"
    )


def _actor_names(cluster) -> list[str]:
    table = cluster.global_state.actor_table(actor_id=None, job_id=None, actor_state_name="ALIVE")
    return sorted(a.get("ActorClassName", "") for a in table.values())


def _healthy(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False
