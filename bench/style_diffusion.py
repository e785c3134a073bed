"""Benchmark of the style diffusion: reconstruction of held-out frontal renders.

Trains the diffusion (preset `demo` by default) on a trained generator in this process, then
for held-out (w, frontal render) pairs that training never saw, samples w from each render and
reports the w-space error (normalised units: per-dimension squared error / w's variance) and the
mean absolute pixel difference (0–1) between the input and the avatar's frontal render — beside
the baseline that always returns the mean w, for several guidance scales λ. One JSON object per
line. Usage:
    .venv/bin/python bench/style_diffusion.py --generator .avatar/demo/gan [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", required=True)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=64, help="held-out pairs")
    parser.add_argument("--guidance", default="0,1,2,4")
    args = parser.parse_args()

    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.formats.model_folder import resolve_model_folder
    from avatar_platform.models.style_diffusion.schedule import sample_w
    from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
    from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer

    torch.set_num_threads(os.cpu_count() or 1)
    overrides = {"steps": args.steps, "eval_pairs": args.pairs}
    config = resolve_config(DiffusionTrainingConfig, "diffusion", args.preset, overrides=overrides)
    trainer = DiffusionTrainer(config, resolve_model_folder(args.generator))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    started = time.perf_counter()
    for _ in range(config.steps):
        metrics = trainer.train_step()
    seconds = time.perf_counter() - started
    w, images = trainer.held_out()
    baseline = trainer.evaluate(w, images)  # also holds the mean-w baseline
    print(
        json.dumps(
            {
                "what": "mean-w baseline",
                "w_error": baseline["eval/w_error_mean_baseline"],
                "image_l1": baseline["eval/image_l1_mean_baseline"],
                "pairs": len(w),
                "machine": machine,
            }
        ),
        flush=True,
    )
    trainer.encoder.eval()
    with torch.no_grad():
        cond = trainer.encoder(images)
        for lam in (float(g) for g in args.guidance.split(",")):
            guess = sample_w(
                trainer.denoiser,
                cond,
                config.schedule,
                guidance=lam,
                generator=torch.Generator().manual_seed(0),
            )
            error = (trainer.denoiser.normalize(guess) - trainer.denoiser.normalize(w)).square()
            l1 = float((trainer.front_render(guess) - images).abs().mean() / 2)
            print(
                json.dumps(
                    {
                        "what": "diffusion",
                        "guidance": lam,
                        "w_error": float(error.mean()),
                        "image_l1": l1,
                        "steps": config.steps,
                        "train_seconds": seconds,
                        "final_loss": metrics["loss"],
                        "pairs": len(w),
                        "machine": machine,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
