"""One real Serve deployment for the serve tests: a tiny diffusion model registered and promoted
to `champion` in a store of its own, served from `models:/styleavatar3d@champion` on local Ray,
once as an open app at `/` and once with an API key at `/keyed`."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

API_KEY = "test-key-1234"


@dataclass(frozen=True)
class Served:
    url: str  # the open app
    keyed_url: str  # the same model behind API_KEY
    home: Path  # the platform home of its MLflow store
    version: int  # the registered version `champion` pointed to when it was deployed
    config: dict  # the app's ServeConfig args
    api_key: str = API_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy in {timeout} s")
        time.sleep(0.5)


@pytest.fixture(scope="package")
def served(ray_session, tiny_diffusion, tmp_path_factory):
    from ray import serve

    from avatar_platform.core.tracking import tracking_uri
    from avatar_platform.pipelines.inference import registry
    from avatar_platform.serve.app import build_app

    home = tmp_path_factory.mktemp("serve-home")
    before = os.environ.get("AVATAR_HOME")
    os.environ["AVATAR_HOME"] = str(home)
    try:
        version = int(registry.register(tiny_diffusion).version)
        registry.promote(registry.MODEL_NAME, version, "champion", force=True)
        uri = tracking_uri()
    finally:
        if before is None:
            os.environ.pop("AVATAR_HOME", None)
        else:
            os.environ["AVATAR_HOME"] = before
    config = {
        "model": f"models:/{registry.MODEL_NAME}@champion",
        "mlflow_tracking_uri": uri,
        "results_dir": str(home / "results"),
        "max_upload_bytes": 256 * 1024,
        "max_pixels": 4_000_000,
        "max_seeds": 8,
        "max_views": 8,
        "max_resolution": 256,
        "max_frames": 24,
        "max_mesh_resolution": 48,
        "max_refine_steps": 8,
        "max_tune_steps": 4,
        "request_timeout_s": 60,
    }
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="avatars", route_prefix="/")
    serve.run(build_app({**config, "api_key": API_KEY}), name="keyed", route_prefix="/keyed")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    wait_healthy(f"{url}/keyed")
    yield Served(url, f"{url}/keyed", home, version, config)
    serve.shutdown()


def deployed_variant(served: Served, name: str, **overrides):
    """The served model again as app `name` at `/<name>`, with `overrides` of its config;
    yields its URL and deletes the app afterwards."""
    from ray import serve

    from avatar_platform.serve.app import build_app

    serve.run(build_app({**served.config, **overrides}), name=name, route_prefix=f"/{name}")
    url = f"{served.url}/{name}"
    wait_healthy(url)
    yield url
    serve.delete(name)


@pytest.fixture(scope="package")
def tight_url(served):
    """Room for one avatar in flight and one waiting."""
    yield from deployed_variant(
        served, "tight", max_ongoing_requests=1, max_queued_requests=1, max_batch_size=1
    )


@pytest.fixture(scope="package")
def impatient_url(served):
    """A request timeout no render can meet."""
    yield from deployed_variant(served, "impatient", request_timeout_s=0.001)


@pytest.fixture(scope="package")
def elastic(served):
    """Scaling between 1 and 2 replicas at one avatar in flight each, quickly: (url, app)."""
    for url in deployed_variant(
        served,
        "elastic",
        min_replicas=1,
        max_replicas=2,
        num_cpus=0.5,
        target_ongoing_requests=1,
        upscale_delay_s=0,
        look_back_period_s=2,
        max_batch_size=1,
    ):
        yield url, "elastic"


FUZZ_LIMITS = {
    "max_seeds": 2,
    "max_views": 2,
    "max_resolution": 32,
    "max_frames": 3,
    "max_mesh_resolution": 16,
    "num_cpus": 0.25,
}


@pytest.fixture(scope="package")
def fuzz_url(served):
    """Limits that keep every schema-valid request cheap to render (the fuzz sends many)."""
    yield from deployed_variant(served, "fuzz", **FUZZ_LIMITS)


@pytest.fixture
def variant(served):
    """`deploy(name, **overrides)` → the URL of the served model again with `overrides` of its
    config, as app `name`; the apps are deleted when the test ends (each holds a replica)."""
    from ray import serve

    from avatar_platform.serve.app import build_app

    names = []

    def deploy(name: str, **overrides) -> str:
        # a quarter CPU: the package's apps already hold most of the session's logical CPUs
        config = {**served.config, "num_cpus": 0.25, **overrides}
        serve.run(build_app(config), name=name, route_prefix=f"/{name}")
        names.append(name)
        url = f"{served.url}/{name}"
        wait_healthy(url)
        return url

    yield deploy
    for name in names:
        serve.delete(name)
