"""Benchmark of `avatar-platform generate`: the Ray Data job vs a plain single-process loop.

Both run the same backend over the same plan; the loop calls the very stage functions the Ray job
wires together (render conditions → generate → PNG + Parquet), one batch after another. Both
timings include process start-up work (imports, model loading in the actors); the local Ray
cluster is started once beforehand, as a cluster would be.

Prints one JSON object per measurement, then the ratios. Usage:
    .venv/bin/python bench/generation.py [--procedural-images 256] [--controlnet-images 48]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

LOOP = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.datagen.stages import ImageGenerator, render_condition_batch, write_part
config_json, out = sys.argv[1], sys.argv[2]
config = GenerateConfig.model_validate_json(config_json)
spec = plan(config)
generator = ImageGenerator(config_json, cpu_threads=2)
for offset in range(0, spec.num_rows, config.shard_size):
    batch = {k: v.to_numpy(zero_copy_only=False) for k, v in
             zip(spec.column_names, spec.slice(offset, config.shard_size).columns)}
    batch["camera"] = np.stack(batch["camera"])
    write_part(generator(render_condition_batch(batch, config_json)), out, config_json)
print(json.dumps({"seconds": time.perf_counter() - start, "images": spec.num_rows}))
"""


def _config(backend: str, images: int, workers: int, tiny: dict | None):
    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.datagen.config import GenerateConfig

    overrides = {"backend": backend, "num_images": images, "workers": workers, "styles": ["all"]}
    if backend == "procedural":
        overrides.update(resolution=128, render_batch_size=16, shard_size=64)
    else:
        overrides.update(resolution=64, render_batch_size=8, shard_size=16)
        overrides["controlnet"] = {**tiny, "steps": 4, "batch_size": 8}
    return resolve_config(GenerateConfig, "generate", "tiny", overrides=overrides)


def run_loop(config) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [sys.executable, "-c", LOOP, config.model_dump_json(), out],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_ray(config) -> dict:
    from avatar_platform.pipelines.datagen.job import run_generate

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = run_generate(config, Path(out) / "ds")
        return {"seconds": time.perf_counter() - start, "images": summary.images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procedural-images", type=int, default=256)
    parser.add_argument("--controlnet-images", type=int, default=160)
    args = parser.parse_args()

    from avatar_platform.core.ray_runtime import init_ray
    from avatar_platform.pipelines.datagen.tiny_models import build_tiny_stable_diffusion

    init_ray(min_cpus=4)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    results = {}
    with tempfile.TemporaryDirectory() as models:
        tiny = build_tiny_stable_diffusion(models)
        for backend, images in (
            ("procedural", args.procedural_images),
            ("controlnet", args.controlnet_images),
        ):
            runs = {
                "loop": run_loop(_config(backend, images, 1, tiny)),
                "ray-1-worker": run_ray(_config(backend, images, 1, tiny)),
                "ray-2-workers": run_ray(_config(backend, images, 2, tiny)),
            }
            for mode, run in runs.items():
                run.update(
                    backend=backend,
                    mode=mode,
                    machine=machine,
                    images_per_second=run["images"] / run["seconds"],
                )
                print(json.dumps(run), flush=True)
            results[backend] = runs
    for backend, runs in results.items():
        rate = {mode: run["images_per_second"] for mode, run in runs.items()}
        print(
            json.dumps(
                {
                    "backend": backend,
                    "ray_1_worker_vs_loop": rate["ray-1-worker"] / rate["loop"],
                    "ray_2_workers_vs_loop": rate["ray-2-workers"] / rate["loop"],
                    "speedup_1_to_2_workers": rate["ray-2-workers"] / rate["ray-1-worker"],
                }
            )
        )


if __name__ == "__main__":
    main()
