"""Benchmark of `avatar-platform train gan`: images/s and s/kimg for presets and worker counts.

Steady-state speed without start-up: the Ray Train loop reports its wall-clock images/s after its
first two steps (data loading and reporting included); a plain in-process loop (GanTrainer, no
Ray, one fixed batch) is the baseline. Prints one JSON object per measurement. Usage:
    .venv/bin/python bench/training.py [--presets tiny,demo] [--workers 1,2] [--data DIR]
The dataset defaults to a procedural one generated on the fly at the preset's resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _dataset(resolution: int, folder: Path) -> Path:
    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.datagen.job import run_generate

    config = resolve_config(
        GenerateConfig, "generate", "tiny", overrides={"num_images": 128, "resolution": resolution}
    )
    run_generate(config, folder)
    return folder


def _loop_rate(config, data: Path, steps: int) -> float:
    """Images/s of GanTrainer steps in this process (1 worker, no Ray), after 2 warm-up steps."""
    import pyarrow.parquet as pq
    import torch

    from avatar_platform.pipelines.training.gan.data import decode_batch, open_dataset
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    _, files = open_dataset(data, config.generator.img_resolution, config.batch_size)
    table = pq.read_table(files[0], columns=["image", "yaw", "pitch", "camera"]).slice(0, config.batch_size)
    batch = {
        k: torch.as_tensor(v)
        for k, v in decode_batch(
            {c: table[c].to_pylist() for c in table.column_names}, config.generator.img_resolution
        ).items()
    }
    trainer = GanTrainer(config)
    for _ in range(2):
        trainer.train_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    return steps * config.batch_size / (time.perf_counter() - start)


def _ray_rate(config, data: Path, steps: int) -> float:
    """Wall-clock images/s inside the Ray Train loop after its first steps (start-up excluded)."""
    from avatar_platform.pipelines.training.gan.job import run_train_gan

    cfg = config.model_copy(
        update={"steps": steps, "checkpoint_every": 10**6, "sample_every": 10**6, "fid_samples": 0}
    )
    with tempfile.TemporaryDirectory() as out:
        summary = run_train_gan(cfg, data, Path(out) / "run", track=False)
    return summary.metrics["throughput_images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,demo")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    from avatar_platform.core.config import resolve_config
    from avatar_platform.core.ray_runtime import init_ray
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    init_ray(min_cpus=6)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            base = resolve_config(GanTrainingConfig, "gan", preset)
            data = args.data or _dataset(base.generator.img_resolution, Path(tmp) / preset)
            steps = {"tiny": (10, 40), "demo": (5, 30)}.get(preset, (2, 6))
            rate = _loop_rate(base, data, steps[1] - steps[0])
            print(
                json.dumps(
                    {
                        "preset": preset,
                        "mode": "loop",
                        "workers": 1,
                        "batch": base.batch_size,
                        "images_per_second": rate,
                        "seconds_per_kimg": 1000 / rate,
                        "machine": machine,
                    }
                ),
                flush=True,
            )
            for workers in (int(w) for w in args.workers.split(",")):
                cfg = base.model_copy(update={"workers": workers})
                rate = _ray_rate(cfg, data, steps[1])
                print(
                    json.dumps(
                        {
                            "preset": preset,
                            "mode": "ray-train",
                            "workers": workers,
                            "batch": base.batch_size,
                            "images_per_second": rate,
                            "seconds_per_kimg": 1000 / rate,
                            "machine": machine,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
