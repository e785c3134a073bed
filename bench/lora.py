"""Benchmark of `train lora`: training steps per second and the adapter's size in bytes.

LoraTrainer in one process, no Ray (the step is what is measured, as in bench/gpu.py), on
random-weight Stable Diffusion components saved to disk and loaded back like real ones:
  * default: the tiny model on CPU with the `tiny` preset (32², rank 4, batch 2), for each
    `--threads` count;
  * `--sd15`: Stable Diffusion 1.5's shapes (860M-parameter UNet, saved in fp16) with the
    `paper` preset (512², rank 16) on CUDA when present: fp16 base, fp32 adapter, autocast;
    also the seconds for the fixed-seed sample images (4 seeds × 25 steps).
Warm-up steps, then timed steps. One JSON object per line. Usage:
    .venv/bin/python bench/lora.py [--steps 50] [--threads 1,2]
    python3 bench/lora.py --sd15 [--batches 1,4] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def measure(config, pictures: Path, device: str, steps: int, warmup: int) -> dict:
    import torch

    from avatar_platform.pipelines.training.lora.data import load_training_images
    from avatar_platform.pipelines.training.lora.trainer import LoraTrainer

    images = load_training_images(pictures, config.token, config.resolution)
    trainer = LoraTrainer(config, images, device)
    cuda = device.startswith("cuda")
    for _ in range(warmup):
        trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        metrics = trainer.train_step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        trainer.save(Path(folder))
        adapter = (Path(folder) / "pytorch_lora_weights.safetensors").stat().st_size
    record = {
        "resolution": config.resolution,
        "rank": config.rank,
        "batch": config.batch_size,
        "precision": "fp16 base + fp32 adapter" if trainer.fp16 else "fp32",
        "steps": steps,
        "steps_per_second": steps / seconds,
        "images_per_second": steps * config.batch_size / seconds,
        "final_loss": metrics["loss"],
        "adapter_bytes": adapter,
        "trainable_parameters": sum(p.numel() for p in trainer.params),
    }
    if cuda:
        record["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        started = time.perf_counter()
        trainer.sample_grid()
        torch.cuda.synchronize()
        record["sample_seconds"] = time.perf_counter() - started
        record["sample_images"] = len(config.sample_seeds)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sd15", action="store_true", help="SD 1.5 shapes, on CUDA if present")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (50 / 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="CPU threads to try (tiny model)")
    parser.add_argument("--batches", default="1,4", help="batch sizes to try (--sd15)")
    args = parser.parse_args()

    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.datagen import tiny_models
    from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig

    with tempfile.TemporaryDirectory() as root:
        pictures = tiny_models.write_tiny_pictures(Path(root) / "pictures", count=10)
        tiny = tiny_models.build_tiny_stable_diffusion(Path(root) / "models")["sd_model"]
        device = "cuda" if args.sd15 and torch.cuda.is_available() else "cpu"
        if device == "cuda":
            name = torch.cuda.get_device_name()
        else:
            name = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        # (model, base, preset, overrides, CPU threads); on CUDA the tiny run checks the fp16
        # path in seconds before the long build
        runs = [("tiny", tiny, "tiny", {}, t) for t in args.threads.split(",")]
        if args.sd15:
            runs = [("tiny", tiny, "tiny", {}, os.cpu_count())] if device == "cuda" else []
            started = time.perf_counter()
            sd15 = tiny_models.build_random_stable_diffusion(
                Path(root) / "models", tiny_models.SD15, "sd15", dtype=torch.float16, controlnets=False
            )["sd_model"]
            print(json.dumps({"what": "sd15-build", "seconds": time.perf_counter() - started}))
            runs += [
                ("sd15-shapes", sd15, "paper", {"batch_size": int(b)}, os.cpu_count())
                for b in args.batches.split(",")
            ]
        for model, base, preset, overrides, threads in runs:
            config = resolve_config(
                LoraTrainingConfig, "lora", preset, overrides={"base": base, "token": "zorb", **overrides}
            )
            torch.set_num_threads(int(threads))
            steps = args.steps or (20 if model == "sd15-shapes" else 50)
            record = measure(config, pictures, device, steps, args.warmup)
            print(
                json.dumps(
                    {
                        "what": "lora-train",
                        "model": model,
                        "preset": preset,
                        "device": device,
                        "threads": int(threads),
                        **record,
                        "machine": name,
                        "torch": torch.__version__,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
