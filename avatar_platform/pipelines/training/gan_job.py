"""`avatar-platform train gan`: a Ray Train TorchTrainer over a generated dataset, tracked in MLflow.

Output folder: `model/` (the final model folder: G, G_ema, D, training state, config),
`ray/` (Ray Train's run and checkpoints, which `--resume` continues), `run.json` (the MLflow run).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from avatar_platform.core.config import save_resolved
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import ensure_writable_dir
from avatar_platform.core.progress import progress_bar
from avatar_platform.core.ray_runtime import check_ray_address, init_ray, require_resources
from avatar_platform.core.tracking import configure_mlflow, flatten_params, tracking_uri
from avatar_platform.pipelines.training.gan_config import GanTrainingConfig
from avatar_platform.pipelines.training.gan_data import open_dataset, ray_dataset
from avatar_platform.pipelines.training.gan_loop import train_gan_loop

RUN_NAME = "train"
EXPERIMENT = "train-gan"


@dataclass
class TrainSummary:
    out: Path
    model: Path
    steps: int
    seconds: float
    run_id: str | None
    metrics: dict


def _prepare_out(out: Path, resume: bool) -> None:
    has_run = (out / "ray" / RUN_NAME).exists()
    if resume and not has_run:
        raise AvatarPlatformError(
            f"nothing to resume in '{out}' (no earlier training run there)",
            fix="pass the --out of the stopped run, or drop --resume to start a new one",
        )
    if not resume and (has_run or (out / "model").exists()):
        raise AvatarPlatformError(
            f"'{out}' already holds a training run",
            fix="pass --resume to continue it, or choose another --out",
        )


class _ProgressWatcher:
    """Shows rank 0's progress file as a progress bar while `fit()` blocks the driver."""

    def __init__(self, path: Path, total: int):
        self.path, self.total = path, total
        self.stop = threading.Event()

    def _run(self) -> None:
        shown = None
        with progress_bar("training", self.total) as bar:
            while not self.stop.wait(0.5):
                try:
                    step = int(json.loads(self.path.read_text())["step"])
                except (OSError, ValueError, KeyError):
                    continue
                if shown is None:  # a resumed run starts where it left off
                    shown = 0
                bar.advance(step - shown)
                shown = step

    def __enter__(self):
        self.path.unlink(missing_ok=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def _use_gpu(config: GanTrainingConfig) -> bool:
    import ray

    if config.use_gpu is not None:
        return config.use_gpu
    return ray.cluster_resources().get("GPU", 0) > 0


def run_train_gan(config: GanTrainingConfig, data: Path, out: Path, *, resume: bool = False,
                  ray_address: str | None = None, track: bool = True,
                  max_failures: int = 2) -> TrainSummary:  # fmt: skip
    """Train (or continue training) the GAN on the dataset in `data`."""
    card, files = open_dataset(data, config.generator.img_resolution, config.batch_size)
    check_ray_address(ray_address)
    out = ensure_writable_dir(out)
    _prepare_out(out, resume)
    init_ray(ray_address, min_cpus=config.workers + 2)
    use_gpu = _use_gpu(config)
    per_worker = {"num_cpus": 1, **({"num_gpus": 1} if use_gpu else {})}
    require_resources(config.workers, per_worker)
    save_resolved(config, out / "config.resolved.json")

    run_file = out / "run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.exists() else None
    if track and run_id is None:
        mlflow = configure_mlflow(EXPERIMENT)
        run = mlflow.MlflowClient().create_run(
            mlflow.get_experiment_by_name(EXPERIMENT).experiment_id,
            run_name=f"gan-{out.name}",
            tags={"dataset": str(Path(data).resolve()), "output": str(out)},
        )
        run_id = run.info.run_id
        client = mlflow.MlflowClient()
        for key, value in flatten_params(config.model_dump(mode="json")).items():
            client.log_param(run_id, key, value)
        client.log_param(run_id, "dataset.num_images", card["num_images"])
        client.log_dict(run_id, config.model_dump(mode="json"), "config.json")
        run_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri()}) + "\n")

    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cores = os.cpu_count() or 1
    trainer = TorchTrainer(
        train_gan_loop,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "tracking_uri": tracking_uri() if track else None,
            "run_id": run_id if track else None,
            "cpu_threads": max(cores // config.workers, 1),
            "progress_file": str(out / "progress.json"),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.workers,
            use_gpu=use_gpu,
            # Ray Train names resources as the cluster does (CPU/GPU), not as tasks do
            resources_per_worker={"CPU": 1, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=RUN_NAME,
            storage_path=str(out / "ray"),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": ray_dataset(files, config.generator.img_resolution, card["num_images"])},
    )
    started = time.perf_counter()
    try:
        with _ProgressWatcher(out / "progress.json", config.steps):
            result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise AvatarPlatformError(
            f"training failed after {max_failures} restarts ({str(err).splitlines()[0][:300]})",
            fix=f"see the worker logs; the last checkpoint is kept: re-run with --resume --out {out}",
        ) from None
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise AvatarPlatformError("training finished without a checkpoint")
    model = out / "model"
    staging = out / ".model-staging"
    shutil.rmtree(staging, ignore_errors=True)
    with result.checkpoint.as_directory() as folder:
        shutil.copytree(folder, staging)
    shutil.rmtree(model, ignore_errors=True)
    staging.rename(model)
    metrics = dict(result.metrics or {})
    if track and run_id:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        client = mlflow.MlflowClient()
        client.log_artifacts(run_id, str(model), "model")
        client.set_terminated(run_id)
    return TrainSummary(
        out, model, int(metrics.get("step", config.steps)), seconds, run_id, metrics
    )
