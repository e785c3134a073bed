"""Learning curve of the demo GAN: FID/KID and geometry error at the start and as training goes.

Trains with `avatar-platform train gan` in segments (each continues the last with --resume) and
evaluates the EMA generator after each: FID and KID (random-CNN features — relative numbers, no
Inception weights here) between images rendered at dataset cameras and dataset images, and the
Chamfer distance between meshes of 4 seeds and the nearest procedural template bust. Writes the
final sample grid to docs/. Prints one JSON object per point. Usage:
    .venv/bin/python bench/learning_curve.py --data .avatar/demo/dataset [--steps 100,200,400]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def evaluate(model: Path, data: Path, samples: int = 128) -> dict:
    from avatar_platform.formats.dataset_card import read_card
    from avatar_platform.formats.model_folder import load_generator
    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.datagen.spec import plan
    from avatar_platform.pipelines.evaluation.fid import (
        frechet_distance,
        generated_features,
        kernel_inception_distance,
        random_feature_extractor,
        real_features,
    )
    from avatar_platform.pipelines.evaluation.geometry import nearest_template_error
    from avatar_platform.pipelines.inference.sampling import mesh_for_seed
    from avatar_platform.pipelines.poses.template import bust_for_seed
    from avatar_platform.pipelines.training.gan.data import decode_batch

    generator = load_generator(model)
    card = read_card(data)
    rows = pq.read_table(data / card["shards"][0]["file"], columns=["image", "yaw", "pitch", "camera"])
    rows = rows.slice(0, samples)
    batch = decode_batch({c: rows[c].to_pylist() for c in rows.column_names}, generator.config.img_resolution)
    extract = random_feature_extractor()
    real = real_features(torch.as_tensor(batch["image"]).float() / 127.5 - 1.0, extract)
    fake = generated_features(generator, torch.as_tensor(batch["camera"]), extract)
    config = GenerateConfig.model_validate(card["config"])
    seeds = sorted(set(plan(config)["avatar_seed"].to_pylist()))[:16]
    templates = [bust_for_seed(s).mesh for s in seeds]
    errors = [nearest_template_error(mesh_for_seed(generator, s, 64, None, 0.7), templates) for s in range(4)]
    return {
        "fid": frechet_distance(real, fake),
        "kid": kernel_inception_distance(real, fake),
        "geometry_chamfer": float(np.mean(errors)),
    }


def sample_grid(model: Path, path: Path) -> None:
    """Rows = seeds 0–3, columns = front, left, back, right (ψ = 0.7)."""
    from avatar_platform.formats.model_folder import load_generator
    from avatar_platform.pipelines.inference.sampling import multiview_grid, write_png, ws_for_seed

    generator = load_generator(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(multiview_grid(generator, [ws_for_seed(generator, s, 0.7) for s in range(4)], 4), path)


def evaluate_snapshots(tar: Path, data: Path, docs: Path) -> None:
    import tarfile

    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tar) as archive:
        archive.extractall(tmp, filter="data")
        snapshots = sorted(p for p in Path(tmp).iterdir() if p.is_dir())
        for folder in snapshots:
            record = json.loads((folder / "record.json").read_text())
            print(json.dumps({**record, **evaluate(folder, data)}), flush=True)
        step = json.loads((snapshots[-1] / "record.json").read_text())["step"]
        sample_grid(snapshots[-1], docs / f"gan-demo-gpu-step{step}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", default="100,200,400")
    parser.add_argument("--docs", type=Path, default=Path("docs/images"))
    parser.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        help="evaluate the snapshots of bench/gan_gpu_curve.py (a tar) instead",
    )
    args = parser.parse_args()
    if args.evaluate:
        evaluate_snapshots(args.evaluate, args.data, args.docs)
        return

    from avatar_platform.core.config import resolve_config
    from avatar_platform.core.ray_runtime import init_ray
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
    from avatar_platform.pipelines.training.gan.job import run_train_gan
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    init_ray(min_cpus=4)
    base = resolve_config(GanTrainingConfig, "gan", "demo")
    with tempfile.TemporaryDirectory() as tmp:
        initial = Path(tmp) / "initial"
        GanTrainer(base).save(initial)
        print(json.dumps({"step": 0, "train_seconds": 0.0, **evaluate(initial, args.data)}), flush=True)
        out, spent, resume = Path(tmp) / "run", 0.0, False
        for steps in (int(s) for s in args.steps.split(",")):
            cfg = base.model_copy(update={"steps": steps, "sample_every": 10**6})
            start = time.perf_counter()
            summary = run_train_gan(cfg, args.data, out, resume=resume, track=False)
            spent += time.perf_counter() - start
            resume = True
            print(
                json.dumps(
                    {
                        "step": summary.steps,
                        "train_seconds": round(spent, 1),
                        **evaluate(summary.model, args.data),
                    }
                ),
                flush=True,
            )
        sample_grid(out, args.docs / f"gan-demo-step{summary.steps}.png")


if __name__ == "__main__":
    main()
