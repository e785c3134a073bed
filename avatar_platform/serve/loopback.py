"""Keep a Serve replica's own gRPC port on loopback when Ray runs on loopback only.

Every Serve replica starts a gRPC server for calls from other deployments, bound to `[::]` (all
interfaces) whatever the node's IP: on a local Ray that `init_ray` keeps on loopback, it would
still let any machine that reaches this one call the model directly, past the ingress and its
checks. Called in each deployment's `__init__`, which Serve runs before it starts that server.
On a cluster (a routable node IP) nothing changes: other nodes must reach the replicas.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def keep_replica_grpc_on_loopback() -> None:
    import ray

    from avatar_platform.core.ray_runtime import is_loopback

    node_ip = ray.util.get_node_ip_address()
    if not is_loopback(node_ip):
        return
    try:
        from ray.serve._private import replica
    except ImportError:  # not in a replica process
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None:
        logger.warning(
            "Ray Serve no longer binds replica gRPC ports the known way: check that replicas listen on loopback only"
        )
        return
    if getattr(original, "avatar_loopback", False):
        return

    def add_port(server, address: str):
        if address.startswith("[::]:"):
            address = f"{node_ip}:{address[len('[::]:') :]}"
        return original(server, address)

    add_port.avatar_loopback = True
    replica.add_port_to_grpc_server = add_port
