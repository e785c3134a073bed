"""The typed config of a served model: what to load, how to scale, and the request limits.

Resolved like every stage (preset `serve:` section → YAML → flags); `avatar-platform serve config`
writes it as the `args` of a Serve config file, which a KubeRay RayService embeds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from avatar_platform.core.config import StrictConfig
from avatar_platform.formats.avatar_spec import (
    MAX_FRAMES,
    MAX_REFINE_STEPS,
    MAX_RESOLUTION,
    MAX_TUNE_STEPS,
    MAX_VIEWS,
    SERVED_MESH_RESOLUTION,
)

IMPORT_PATH = "avatar_platform.serve.app:build_app"


class ServeConfig(StrictConfig):
    """One Serve application: an ingress deployment in front of an autoscaled model deployment."""

    model: str | None = Field(
        None, description="model folder, `train` output or MLflow URI (models:/styleavatar3d@champion)"
    )
    host: str = Field("127.0.0.1", description="HTTP host (0.0.0.0 to listen on every interface)")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port")
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode",
        description="where Serve runs HTTP proxies: every node (a load balancer in front), or "
        "the head only (one address; several nodes on one machine share its ports)",
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs per model replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model replica (fractions share one)")
    min_replicas: int = Field(1, ge=0, description="fewest model replicas (autoscaling)")
    max_replicas: int = Field(1, ge=1, description="most model replicas (autoscaling)")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="avatars in flight per replica that the autoscaler aims for"
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, description="how long load must stay high before a replica is added"
    )
    downscale_delay_s: float = Field(
        600.0, ge=0, description="how long load must stay low before a replica is removed"
    )
    look_back_period_s: float = Field(
        30.0, gt=0, description="the window the autoscaler averages the load over"
    )
    max_ongoing_requests: int = Field(
        8, ge=1, description="avatars one replica works on at once (the rest wait in its queue)"
    )
    max_queued_requests: int = Field(
        32, ge=1, description="avatars waiting for a replica before new requests get 503"
    )
    max_batch_size: int = Field(4, ge=1, description="avatars rendered together by a replica")
    batch_wait_timeout_s: float = Field(0.05, ge=0, description="how long a replica waits to fill a batch")
    render_chunk: int = Field(16, ge=1, description="images per synthesis call (memory bound)")
    request_timeout_s: float = Field(120.0, gt=0, description="a request's longest run")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest upload")
    max_pixels: int = Field(16_000_000, ge=256, description="largest uploaded picture (pixels)")
    max_seeds: int = Field(16, ge=1, description="most seeds per request")
    max_views: int = Field(16, ge=1, le=MAX_VIEWS, description="most views per avatar")
    max_resolution: int = Field(1024, ge=16, le=MAX_RESOLUTION, description="largest side of a returned view")
    max_frames: int = Field(72, ge=2, le=MAX_FRAMES, description="most turntable frames")
    max_mesh_resolution: int = Field(
        128, ge=16, le=SERVED_MESH_RESOLUTION, description="largest marching-cubes grid side"
    )
    max_refine_steps: int = Field(
        200,
        ge=0,
        le=MAX_REFINE_STEPS,
        description="most projection steps of a picture request (refine; 0: off)",
    )
    max_tune_steps: int = Field(
        50,
        ge=0,
        le=MAX_TUNE_STEPS,
        description="most pivotal-tuning steps of a picture request (tune; 0: off)",
    )
    max_results: int = Field(
        1000, ge=1, description="result sets kept on disk (the oldest are deleted first)"
    )
    max_results_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description="bytes of result sets kept on disk (the oldest are deleted first; the newest set is always kept)",
    )
    results_dir: str | None = Field(
        None, description="where results are written (default: <platform home>/serve/results)"
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow to load models:/ URIs from (default: MLFLOW_TRACKING_URI)"
    )
    api_key_env: str = Field(
        "AVATAR_API_KEY",
        description="environment variable holding the API key; unset or empty: no key needed",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="without an API key, the Host names answered besides loopback, `host` and, "
        "for 0.0.0.0, this machine's names and IPs ('*': any; a DNS-rebinding guard)",
    )

    @model_validator(mode="after")
    def _replicas_in_order(self) -> ServeConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    def autoscaling_config(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }

    def application_args(self) -> dict:
        """What a Serve config's `args` holds (HTTP host and port live in its `http_options`)."""
        return self.model_dump(exclude={"host", "port", "proxy_location"}, exclude_none=True)
