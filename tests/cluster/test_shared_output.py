"""An `--out` that some node of the cluster cannot see is refused before the job starts (issue #17).

The cluster is simulated on one machine (`ray.cluster_utils.Cluster`). One more worker node is
started in a mount namespace of its own with an empty tmpfs over the test's folder, so it really
cannot see what the driver writes there. That is what a folder on one machine's own disk is to
the other nodes of a real cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "avatar_platform.cli.app", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _alive(cluster) -> int:
    return sum(1 for node in cluster.global_state.node_table() if node["Alive"])


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "node_ip_address": LOOPBACK, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


# a worker node as `Cluster.add_node` starts one, run in another process (`ray start` refuses to
# join a loopback-only head); argv[1] is the head's GCS address
NODE = """
import sys, time
from ray._private.node import Node
from ray._private.parameter import RayParams
params = RayParams(num_cpus=1, num_gpus=0, object_store_memory=150 * 2**20, min_worker_port=0,
                   max_worker_port=0, node_ip_address="127.0.0.1", gcs_address=sys.argv[1],
                   include_log_monitor=False, node_manager_port=0)
params.dashboard_agent_listen_port = None
Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
while True:
    time.sleep(1)
"""


def _private_node(cluster, hidden: Path) -> subprocess.Popen:
    """A worker node that sees an empty `hidden` folder: its own mount namespace, a tmpfs there."""
    script = f'mount -t tmpfs none "{hidden}" && exec "{sys.executable}" -c "$0" "$1"'
    node = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", script, NODE, cluster.gcs_address],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while _alive(cluster) < 3:
        assert node.poll() is None, f"the private node did not start: {node.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the private node did not join in 90 s"
        time.sleep(0.5)
    return node


@pytest.mark.cluster
def test_a_folder_one_node_cannot_see_is_refused_before_generate_or_train_starts(cluster, tmp_path):
    data = tmp_path / "ds"
    made = _cli(
        "generate",
        "--preset",
        "tiny",
        "--out",
        str(data),
        "--ray-address",
        cluster.address,
        "--no-track",
        "--no-preview",
    )
    assert made.returncode == 0, made.stderr[-3000:]  # every node sees the folder: it runs
    node = _private_node(cluster, tmp_path)
    try:
        gan = _cli(
            "train",
            "gan",
            "--preset",
            "tiny",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "gan"),
            "--steps",
            "2",
            "--ray-address",
            cluster.address,
            "--no-track",
        )
        again = _cli(
            "generate",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "ds2"),
            "--ray-address",
            cluster.address,
            "--no-track",
            "--no-preview",
        )
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=60)
    for result, out in ((gan, tmp_path / "gan"), (again, tmp_path / "ds2")):
        assert result.returncode == 2, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "is not visible from 1 of the cluster's 3 nodes" in errors[0], errors
        assert "shared storage" in errors[0]
        assert not out.exists()  # nothing half-made left behind
    assert not list(tmp_path.glob("**/.visible-*"))  # the probe's token file is gone
