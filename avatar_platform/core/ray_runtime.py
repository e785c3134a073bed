"""Start or join Ray: in-process local Ray by default, a cluster with `--ray-address` / `RAY_ADDRESS`.

A local Ray listens on loopback only: its GCS, raylet, agents and workers take unauthenticated
gRPC calls that can run code, so nothing outside this machine may reach them. Exposing Ray is an
explicit choice: start a cluster yourself (`ray start --head`) and pass `--ray-address`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os

from avatar_platform.core.errors import AvatarPlatformError

LOOPBACK = "127.0.0.1"
# Ray's own switch for "a single machine, no cluster" (its default on macOS and Windows): the
# node's IP is then the loopback address, and every Ray process binds to it instead of to `*`
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray(address: str | None = None, min_cpus: int = 0) -> str:
    """Make sure this process is connected to Ray and return where (`local` or the address).

    Re-uses an existing connection (tests start one Ray per session). A local Ray gets at least
    `min_cpus` logical CPUs: an actor pool that claims every core would starve the read tasks
    (observed as a hang on 2-core machines), so logical CPUs may exceed physical cores.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return "existing"
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray's start-up notices and Ray Data's per-dataset lines would drown the platform's own
    # progress; its errors still show
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if address:
        # a head on this machine's loopback (one the platform started) is joined as this node:
        # Ray would otherwise look for a raylet at the routable IP, where nothing listens
        local_head = address not in ("auto", "local") and is_loopback(_address_host(address))
        node = {"_node_ip_address": LOOPBACK} if local_head else {}
        try:
            with _loopback_node() if local_head else contextlib.nullcontext():
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, **node)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise AvatarPlatformError(
                f"cannot connect to the Ray cluster at '{address}' ({str(err).splitlines()[0]})",
                expected="the address of a running Ray head, e.g. ray://host:10001 or host:6379",
                fix="start the cluster, correct --ray-address, or unset RAY_ADDRESS for local Ray",
            ) from None
        return address
    num_cpus = max(os.cpu_count() or 1, min_cpus)
    with _loopback_node():
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            _node_ip_address=LOOPBACK,
        )
    gcs_host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0].strip("[]")
    if not is_loopback(gcs_host):
        ray.shutdown()
        raise AvatarPlatformError(
            f"local Ray came up on {gcs_host}, not on loopback: its ports would be open to the network",
            expected=f"this Ray version to honour {SINGLE_NODE_ENV}=0 (node IP {LOOPBACK})",
            fix="start Ray yourself (`ray start --head --node-ip-address …`) and pass --ray-address",
        )
    return "local"


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP, IPv4-mapped IPv6 included, or `localhost`) is this machine only."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _address_host(address: str) -> str:
    """The host of a Ray address (`host:port`, `ray://host:port`, `[::1]:port`)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(address if "://" in address else f"gcs://{address}").hostname or ""
    except ValueError:
        return ""


@contextlib.contextmanager
def _loopback_node():
    """While Ray starts: node IP = loopback, in this process and in the Ray processes it spawns
    (they inherit the environment). Ray otherwise takes the machine's routable IP (even when
    asked for 127.0.0.1) and its gRPC servers listen on every interface. Restored afterwards, so
    that a later `ray start` or cluster connection from this process is unaffected."""
    from ray._private import ray_constants

    saved_env = os.environ.get(SINGLE_NODE_ENV)
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = saved_env


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a cluster address nobody answers at (ray.init would retry for minutes)."""
    import socket
    from urllib.parse import urlsplit

    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise AvatarPlatformError(
            f"'{address}' is not a Ray cluster address",
            expected="host:port of the head's GCS (e.g. 10.0.0.5:6379) or ray://host:10001",
            fix="correct --ray-address or RAY_ADDRESS",
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise AvatarPlatformError(
            f"no Ray cluster answers at '{address}' ({err.strerror or err})",
            expected="the address of a running Ray head",
            fix="start the cluster (ray start --head), correct --ray-address, or unset RAY_ADDRESS to use local Ray",
        ) from None


def require_resources(workers: int, per_worker: dict[str, float], what: str = "workers") -> None:
    """Refuse a request the cluster can never place (it would wait forever instead)."""
    import ray

    total = ray.cluster_resources()
    for key, unit in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        need = per_worker.get(key, 0) * workers
        have = total.get(unit, 0)
        if need > have:
            fit = max(int(have // per_worker[key]), 1) if have else 0
            raise AvatarPlatformError(
                f"{workers} {what} need {need:g} {unit}s but the Ray cluster has {have:g}",
                expected=f"--workers × per-worker {unit}s within the cluster's resources",
                fix=f"pass --workers {fit} or add nodes" if fit else f"use a cluster with {unit}s",
            )


def gpus_to_use(mode: str, needed: float, wait_s: float, what: str, poll_s: float = 1.0) -> bool:
    """Whether a job runs on GPUs (`mode`: the configs' `gpus`, checked there). `auto`: when the cluster has GPUs now; `none`: never;
    `required`: wait up to `wait_s` seconds for `needed` GPUs (asking an autoscaler for them),
    then one clear error. `required` never falls back to the CPU."""
    import time

    import ray

    if mode == "none":
        return False
    if mode == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    try:  # an autoscaling cluster starts GPU nodes for the request; elsewhere this is a no-op
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"GPU": 1}] * max(int(needed), 1))
    except Exception:  # noqa: BLE001 - no autoscaler: only the wait below matters
        pass
    deadline = time.monotonic() + wait_s
    while True:
        have = ray.cluster_resources().get("GPU", 0)
        if have >= needed:
            return True
        if time.monotonic() >= deadline:
            raise AvatarPlatformError(
                f"{what} need {needed:g} GPUs (--gpus required) but the Ray cluster has {have:g} "
                f"after waiting {wait_s:g} s",
                expected="GPU nodes in the cluster, or an autoscaler that can start them",
                fix="add GPU nodes (or raise the GPU group's max_workers), wait longer with "
                "--gpu-wait SECONDS, or pass --gpus auto to run where there are none",
            )
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


def nodes_not_seeing(folder, timeout_s: float = 60.0) -> tuple[list[str], int]:
    """(the alive nodes that cannot read a file written into `folder` here, how many nodes are
    alive). A token file is written, a zero-CPU task on every node reads it back, the file is
    removed. One node (a local Ray): ([], 1), nothing written."""
    import uuid
    from pathlib import Path

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) <= 1:
        return [], len(nodes)
    token = uuid.uuid4().hex
    marker = Path(folder) / f".visible-{token}"
    marker.write_text(token)

    @ray.remote(num_cpus=0, max_retries=0)
    def reads(path: str, expected: str) -> bool:
        try:
            return Path(path).read_text() == expected
        except OSError:
            return False

    try:
        refs = [
            reads.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker), token)
            for node in nodes
        ]
        seen = ray.get(refs, timeout=timeout_s)
    finally:
        marker.unlink(missing_ok=True)
    blind = [
        f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
        for node, ok in zip(nodes, seen, strict=True)
        if not ok
    ]
    return blind, len(nodes)


def require_shared_folder(folder, what: str = "--out") -> None:
    """On a multi-node cluster, `folder` must be the same folder on every node: the workers write
    parts and checkpoints into it, and the driver reads them back. One clear error if not."""
    blind, total = nodes_not_seeing(folder)
    if blind:
        raise AvatarPlatformError(
            f"{what} '{folder}' is not visible from {len(blind)} of the cluster's {total} nodes "
            f"({', '.join(blind)}): it is on this machine's own disk",
            expected="a folder every node mounts at the same path (NFS, EFS, a ReadWriteMany volume)",
            fix="pass a folder on shared storage (docs/operations.md, 'Where state lives')",
        )
