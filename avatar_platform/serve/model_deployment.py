"""The model deployment: loads a model once per replica and renders avatars in batches.

Scaling (`autoscaling_config`), backpressure (`max_ongoing_requests`, `max_queued_requests`) and
the replica's CPUs/GPUs are set by `app.build_app` from the `ServeConfig`.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

from ray import serve

from avatar_platform.pipelines.inference.pyfunc import AvatarRequest
from avatar_platform.serve.avatars import RenderedAvatar, render_jobs
from avatar_platform.serve.config import ServeConfig
from avatar_platform.serve.loopback import keep_replica_grpc_on_loopback
from avatar_platform.serve.schemas import ModelInfo


def load_served_model(config: ServeConfig):
    """(pyfunc model, ModelInfo) of `config.model`; an alias is pinned to its version first, so
    the version reported is the one loaded even if the alias moves meanwhile."""
    import torch

    from avatar_platform.formats.model_folder import resolve_package_folder
    from avatar_platform.pipelines.inference.pyfunc import load_model
    from avatar_platform.pipelines.inference.registry import pin_alias

    spec, reference = pin_alias(config.model)
    device = "cuda" if config.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    model = load_model(resolve_package_folder(spec), device=device)
    info = ModelInfo(
        uri=config.model,
        **(asdict(reference) if reference else {}),
        image_conditioning=model.has_image_conditioning,
        resolution=model.generator.config.img_resolution,
        device=device,
    )
    return model, info


@serve.deployment(name="AvatarModel")
class AvatarModel:
    def __init__(self, args: dict) -> None:
        keep_replica_grpc_on_loopback()
        self.config = ServeConfig.model_validate(args)
        if self.config.mlflow_tracking_uri:
            # a replica process of its own: where its models:/ URIs are looked up
            os.environ["MLFLOW_TRACKING_URI"] = self.config.mlflow_tracking_uri
        self.model, self._info = load_served_model(self.config)
        self.render.set_max_batch_size(self.config.max_batch_size)
        self.render.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    def info(self) -> dict:
        return self._info.model_dump()

    async def __call__(self, job: AvatarRequest) -> list[RenderedAvatar]:
        return await self.render(job)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def render(self, jobs: list[AvatarRequest]) -> list[list[RenderedAvatar]]:
        # off the replica's event loop, so health checks and queueing go on during a batch
        return await asyncio.to_thread(render_jobs, self.model, jobs, self.config.render_chunk)
