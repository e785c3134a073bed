"""The config of `avatar-platform generate` (section `generate` of a preset)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from avatar_platform.core.config import GpuPolicy
from avatar_platform.pipelines.datagen.controlnet_backend import ControlNetBackendConfig
from avatar_platform.pipelines.datagen.procedural_backend import ProceduralBackendConfig
from avatar_platform.pipelines.poses.camera import CameraConfig
from avatar_platform.pipelines.poses.view_bins import ViewBinConfig
from avatar_platform.pipelines.prompts.prompts import PromptConfig


class GenerateConfig(GpuPolicy):
    """A multi-view avatar dataset: how many images, of what, made how, written where (its
    `gpus` policy applies to the controlnet backend; the procedural one renders on CPUs)."""

    backend: Literal["procedural", "controlnet"] = Field(
        "procedural", description="image backend: procedural (offline renderer) or controlnet (SD)"
    )
    num_images: int = Field(64, gt=0, description="images in the dataset")
    styles: list[str] = Field(["all"], description="catalog style names, or ['all']")
    views_per_avatar: int = Field(8, ge=1, description="images (cameras) per avatar template")
    resolution: int = Field(128, ge=16, le=2048, description="image side in pixels")
    seed: int = Field(0, ge=0, description="seed of the whole plan: same seed, same dataset")
    workers: int = Field(1, ge=1, description="image-generation actors (one GPU each on a cluster)")
    gpus_per_worker: float = Field(1.0, gt=0, description="GPUs per actor where GPUs exist")
    render_batch_size: int = Field(8, ge=1, description="rows per conditioning-render task")
    shard_size: int = Field(64, ge=1, description="rows per Parquet part file (at most)")
    save_conditions: bool = Field(True, description="also store the OpenPose and depth images in the dataset")
    template_mesh: str | None = Field(
        None, description="a user mesh (GLB/OBJ/PLY) for every avatar instead of procedural busts"
    )
    template_landmarks: str | None = Field(
        None, description="landmarks JSON of template_mesh (default: <mesh>.landmarks.json)"
    )
    template_normalize: bool = Field(
        False,
        description="centre and scale template_mesh from its landmarks (ears or eyes) to the "
        "built-in busts' size, head centre at the origin",
    )
    camera: CameraConfig = Field(default_factory=CameraConfig)
    view_bins: ViewBinConfig = Field(default_factory=ViewBinConfig)
    prompts: PromptConfig = Field(default_factory=PromptConfig)
    procedural: ProceduralBackendConfig = Field(default_factory=ProceduralBackendConfig)
    controlnet: ControlNetBackendConfig = Field(default_factory=ControlNetBackendConfig)

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"resolution must be a multiple of 8 (the VAE's stride), got {value}")
        return value

    @field_validator("styles", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value
