"""Train the demo GAN on one GPU, in-process, and keep G_ema at several steps.

The CPU learning curve (bench/learning_curve.py) stops after minutes; this trains the same preset
for thousands of steps where a GPU is lent, without Ray (the dataset — a few MB — is decoded once
onto the GPU), and writes `generator_ema` snapshots into one tar for evaluation elsewhere:
    python bench/gan_gpu_curve.py --data DATASET --steps 500,1500,3000 --out curve.tar
then, on any machine:  .venv/bin/python bench/learning_curve.py --data DATASET --evaluate curve.tar
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", default="500,1500,3000")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.formats.dataset_card import read_card
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
    from avatar_platform.pipelines.training.gan.data import decode_batch
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    config = resolve_config(GanTrainingConfig, "gan", args.preset)
    card = read_card(args.data)
    tables = [
        pq.read_table(args.data / s["file"], columns=["image", "yaw", "pitch", "camera"])
        for s in card["shards"]
    ]
    decoded = [
        decode_batch({c: t[c].to_pylist() for c in t.column_names}, config.generator.img_resolution)
        for t in tables
    ]
    device = args.device
    data = {k: torch.cat([torch.as_tensor(d[k]) for d in decoded]).to(device) for k in decoded[0]}
    total = len(data["image"])
    trainer = GanTrainer(config, device=device)
    marks = sorted(int(s) for s in args.steps.split(","))
    pick = torch.Generator(device=device).manual_seed(config.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(args.out, "w") as tar:
        while trainer.step < marks[-1]:
            index = torch.randint(0, total, (config.batch_size,), device=device, generator=pick)
            metrics = trainer.train_step({k: v[index] for k, v in data.items()})
            if trainer.step in marks:
                folder = Path(tmp) / f"step-{trainer.step:06d}"
                trainer.G_ema.save_pretrained(folder, "generator_ema")
                tar.add(folder, arcname=folder.name)
                record = {
                    "step": trainer.step,
                    "seconds": time.perf_counter() - started,
                    "images": trainer.step * config.batch_size,
                    "loss_G": metrics["loss/G"],
                    "loss_D": metrics["loss/D"],
                    "device": torch.cuda.get_device_name() if device == "cuda" else device,
                }
                print(json.dumps(record), flush=True)
                info = tarfile.TarInfo(f"{folder.name}/record.json")
                payload = json.dumps(record).encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


if __name__ == "__main__":
    main()
