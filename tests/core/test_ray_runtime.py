"""The local Ray that the platform starts (init_ray, as every command and the test session do)
listens on loopback only: no Ray port is reachable from another machine."""

from __future__ import annotations

import ipaddress

import psutil


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def ray_listeners() -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of this process and the
    processes it started (the local Ray: GCS, raylet, agents, workers, Serve actors)."""
    me = psutil.Process()
    found = []
    for process in [me, *me.children(recursive=True)]:
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except psutil.Error:  # exited meanwhile
            continue
        found += [(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def test_local_ray_listens_on_loopback_only(ray_session):
    import ray

    @ray.remote
    def ping() -> int:  # a worker, which listens too
        return 1

    assert ray.get(ping.remote()) == 1
    listeners = ray_listeners()
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners  # the test sees Ray's processes
    exposed = [entry for entry in listeners if not _loopback(entry[1])]
    assert not exposed, f"Ray ports open beyond loopback: {exposed}"
    assert _loopback(ray_session.rsplit(":", 1)[0]), ray_session  # what the driver dials


def test_is_loopback():
    from avatar_platform.core.ray_runtime import is_loopback

    for host in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.2", "::ffff:10.0.0.1", "example.com", ""):
        assert not is_loopback(host), host
