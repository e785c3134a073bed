"""What every `train` job's config has, whatever it trains: its length, its seed, where its Ray
Train workers run, and how often it logs and checkpoints (read by `ray_job.prepare_run` and the
step driver). `train gan | diffusion | lora` each add their own networks and losses."""

from __future__ import annotations

from pydantic import Field, model_validator

from avatar_platform.core.config import GpuPolicy


class TrainingJobConfig(GpuPolicy):
    """The fields a Ray Train job reads, shared by the three training configs."""

    batch_size: int = Field(32, ge=1, description="examples per step, over all workers")
    steps: int = Field(1000, ge=1, description="training steps")
    seed: int = Field(0, ge=0, description="training seed")
    workers: int = Field(1, ge=1, description="Ray Train workers (DDP, one GPU each on GPUs)")
    use_gpu: bool | None = Field(None, description="gpus auto: None = when the cluster has GPUs")
    checkpoint_every: int = Field(100, ge=1, description="checkpoint every N steps")
    log_every: int = Field(10, ge=1, description="log metrics every N steps")

    @model_validator(mode="after")
    def _batch_splits_over_workers(self) -> TrainingJobConfig:
        if self.batch_size % self.workers:
            raise ValueError(f"batch_size {self.batch_size} must divide by workers {self.workers}")
        return self
