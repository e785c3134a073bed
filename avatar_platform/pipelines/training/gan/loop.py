"""The Ray Train worker loop of the GAN: data shard → GanTrainer steps → reports and checkpoints.

Rank 0 logs metrics and sample grids to MLflow (Ray Train V2 has no MLflow callback) and hands
checkpoints to `ray.train.report`; every rank reports, so the workers stay in step.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

from avatar_platform.formats.model_folder import BEST_FOLDER, read_metrics, replace_folder, write_metrics
from avatar_platform.pipelines.training.fid_tracker import FidTracker
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.trainer import GanTrainer
from avatar_platform.pipelines.training.ray_job import due, report_checkpoint, start_worker, training_steps

SAMPLE_SEEDS = (0, 1, 2, 3)


class BestModel:
    """Rank 0's lowest-FID weights so far in OUT/best/ (`gan.keep_best`): a model folder with the
    FID, KID and step in its metrics.json. A resumed run keeps the best of the stopped one."""

    def __init__(self, out: str | None, enabled: bool):
        self.folder = Path(out) / BEST_FOLDER if out and enabled else None
        self.fid = math.inf
        if self.folder is not None and self.folder.is_dir():
            self.fid = float(read_metrics(self.folder).get("fid", math.inf))

    def offer(self, scores: dict[str, float], step: int, save: Callable[[Path], None]) -> bool:
        """Write the model (`save(folder)`) when `scores['fid']` beats the best so far."""
        if self.folder is None or not scores["fid"] < self.fid:
            return False
        staging = self.folder.with_name(f".{BEST_FOLDER}-staging")
        shutil.rmtree(staging, ignore_errors=True)
        save(staging)
        write_metrics(staging, {**scores, "step": step}, keep_existing=False)
        replace_folder(staging, self.folder)
        self.fid = scores["fid"]
        return True


def train_gan_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train

    from avatar_platform.pipelines.rendering import view_grid

    config, rank, logger, trainer = start_worker(loop_config, GanTrainingConfig, GanTrainer)
    if trainer.step == 0 and loop_config.get("init"):  # not when a checkpoint continues the run
        from avatar_platform.pipelines.training.gan.init import load_init

        load_init(trainer, Path(loop_config["init"]), loop_config.get("init_label"))
    shard = ray.train.get_dataset_shard("train")
    fid = FidTracker(config.fid_samples if rank == 0 else 0)
    best = BestModel(loop_config.get("out") if rank == 0 else None, config.keep_best)

    def epochs():  # the shard, pass after pass; rank 0's FID tracker keeps real pictures
        while True:
            for batch in shard.iter_torch_batches(
                batch_size=trainer.per_worker_batch,
                drop_last=True,
                local_shuffle_buffer_size=loop_config.get("shuffle_rows") or 4 * trainer.per_worker_batch,
            ):
                fid.collect(batch)
                yield batch

    for step, metrics, last in training_steps(
        trainer,
        config.steps,
        config.log_every,
        loop_config,
        rank,
        logger,
        batches=epochs(),
        images_per_step=config.batch_size,
    ):
        if fid.ready and due(step, config.fid_every, last):
            scores = fid.score(trainer.G_ema)
            if best.offer(scores, step, trainer.save):
                scores = {**scores, "best_fid": best.fid}
            logger.metrics(scores, step)
            metrics.update(scores)  # into this step's report: model/metrics.json keeps the FID
        if rank == 0 and due(step, config.sample_every, last):
            grid = view_grid(trainer.G_ema, list(SAMPLE_SEEDS))
            logger.image(grid, f"samples/step-{step:07d}.png")
        if due(step, config.checkpoint_every, last):
            report_checkpoint(step, metrics, trainer.save, rank)
