"""GPU benchmark: the GAN step per preset on one GPU, and the ControlNet backend in fp16.

Runs where a CUDA GPU is present and without Ray (one process, one GPU):
  * `diffusion`: the style diffusion's training step (pairs rendered on the fly) and the
    latency of one picture → avatar, demo and paper presets (random weights, CLIP-L shapes).
  * `gan`: GanTrainer steps on random uint8 batches with real dataset cameras, for each preset,
    bf16 autocast and fp32; images/s and s/kimg per GPU after warm-up steps, peak memory.
  * `controlnet`: the `controlnet` backend (the code path real weights take) on random-weight
    models saved to disk and loaded back: tiny (checks fp16 on CUDA: finite, seeded) and, with
    `--sd15`, Stable Diffusion 1.5's shapes (860M UNet + two ControlNets) at 512², which costs what
    the real weights cost per image.
Prints one JSON object per measurement. Usage:
    python bench/gpu.py [--parts gan,controlnet,diffusion] [--sd15] [--paper-batches 4,32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

# the paper preset's image encoder, CLIP ViT-L/14, at its sizes with random weights
CLIP_VIT_L14 = dict(width=1024, layers=24, heads=16, image_size=224, patch_size=14, embed_dim=768)


def _emit(**record) -> None:
    print(json.dumps(record), flush=True)


def _batch(config, batch_size: int, device):
    """Random images at dataset cameras (speed does not depend on the pixels)."""
    import numpy as np
    import torch

    from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles

    rng = np.random.default_rng(0)
    yaw = rng.uniform(-180, 180, batch_size).astype(np.float32)
    pitch = rng.uniform(-20, 20, batch_size).astype(np.float32)
    cameras = np.stack([camera_from_angles(y, p, CameraConfig()) for y, p in zip(yaw, pitch, strict=True)])
    res = config.generator.img_resolution
    images = rng.integers(0, 256, (batch_size, 3, res, res), dtype=np.uint8)
    return {
        "image": torch.from_numpy(images).to(device),
        "yaw": torch.from_numpy(yaw),
        "pitch": torch.from_numpy(pitch),
        "camera": torch.from_numpy(cameras.astype(np.float32)),
    }


def gan(paper_batches: list[int], device_name: str) -> None:
    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    runs = [("tiny", None, True), ("demo", None, True)]
    runs += [("paper", b, amp) for b in paper_batches for amp in (True, False)]
    for preset, batch_size, amp in runs:
        config = resolve_config(GanTrainingConfig, "gan", preset)
        batch_size = batch_size or config.batch_size
        config = config.model_copy(update={"batch_size": batch_size, "mixed_precision": amp})
        torch.cuda.reset_peak_memory_stats()
        trainer = GanTrainer(config, device="cuda")
        batch = _batch(config, batch_size, "cuda")
        warm, steps = 3, 10 if preset == "paper" else 20
        losses = []
        for _ in range(warm):
            losses.append(trainer.train_step(batch))
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            losses.append(trainer.train_step(batch))
        torch.cuda.synchronize()
        rate = steps * batch_size / (time.perf_counter() - start)
        finite = all(torch.isfinite(torch.tensor(list(m.values()))).all() for m in losses)
        _emit(
            part="gan",
            preset=preset,
            batch=batch_size,
            precision="bf16" if amp else "fp32",
            images_per_second=rate,
            seconds_per_kimg=1000 / rate,
            finite_losses=bool(finite),
            peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30,
            device=device_name,
        )
        del trainer
        torch.cuda.empty_cache()


def controlnet(sd15: bool, device_name: str) -> None:
    import numpy as np
    import torch

    from avatar_platform.pipelines.datagen.backend import ImageRequest
    from avatar_platform.pipelines.datagen.controlnet_backend import (
        ControlNetBackend,
        ControlNetBackendConfig,
    )
    from avatar_platform.pipelines.datagen.tiny_models import SD15, TINY, build_random_stable_diffusion

    def requests(n: int, res: int) -> list[ImageRequest]:
        rng = np.random.default_rng(1)
        return [
            ImageRequest(
                prompt=f"a pixar character, view {i}",
                negative_prompt="blurry",
                seed=100 + i,
                openpose=rng.integers(0, 256, (res, res, 3), np.uint8),
                depth=rng.integers(0, 256, (res, res, 3), np.uint8),
                style="pixar",
                avatar_seed=i,
                render_yaw=0.0,
                render_pitch=0.0,
            )
            for i in range(n)
        ]

    shapes = [("tiny", TINY, 64, 8, 4)] + ([("sd15", SD15, 512, 20, 8)] if sd15 else [])
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, res, steps, batch in shapes:
            start = time.perf_counter()
            paths = build_random_stable_diffusion(Path(tmp) / name, spec, name, dtype=torch.float16)
            built = time.perf_counter() - start
            config = ControlNetBackendConfig(
                **paths, steps=steps, batch_size=batch, guidance="hybrid", scheduler="unipc"
            )
            start = time.perf_counter()
            backend = ControlNetBackend(config)
            loaded = time.perf_counter() - start
            backend.generate(requests(batch, res), res)  # warm-up: kernels, autotuning
            torch.cuda.synchronize()
            start = time.perf_counter()
            images = backend.generate(requests(2 * batch, res), res)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            again = backend.generate(requests(1, res), res)[0]
            _emit(
                part="controlnet",
                model=name,
                resolution=res,
                steps=steps,
                batch=batch,
                dtype=backend.identity()["dtype"],
                images_per_second=2 * batch / seconds,
                seconds_per_image=seconds / (2 * batch),
                build_seconds=built,
                load_seconds=loaded,
                all_images_finite=bool(all(np.isfinite(i).all() for i in images)),
                images_differ=bool(not np.array_equal(images[0], images[1])),
                # the same seed alone vs in a batch: fp16 kernels differ by batch size on GPU
                seeded_mean_abs_diff=float(np.abs(images[0].astype(float) - again).mean()),
                device=device_name,
            )
            del backend
            torch.cuda.empty_cache()


def diffusion(device_name: str, presets: tuple[str, ...] = ("demo", "paper")) -> None:
    """The style diffusion's training step and image → avatar latency on GPU: the paper preset
    (CLIP ViT-L/14-shaped encoder with random weights, the paper generator with random weights)."""
    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator
    from avatar_platform.pipelines.datagen.tiny_models import build_random_clip_vision
    from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
    from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            folder = Path(tmp) / preset
            gan = resolve_config(GanTrainingConfig, "gan", preset)
            TriPlaneGenerator(gan.generator).save_pretrained(folder / "g", "generator_ema")
            overrides: dict = {"w_stats_samples": 256, "pair_pool": 0}
            if preset == "paper":
                clip = build_random_clip_vision(folder / "clip", **CLIP_VIT_L14)
                overrides["encoder"] = {"clip_model": clip}
                overrides["batch_size"] = 32  # per GPU: the preset is 256 over 8 GPUs
            config = resolve_config(DiffusionTrainingConfig, "diffusion", preset, overrides=overrides)
            torch.cuda.reset_peak_memory_stats()
            trainer = DiffusionTrainer(config, folder / "g", device="cuda")
            losses = [trainer.train_step()["loss"] for _ in range(2)]
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(5):
                losses.append(trainer.train_step()["loss"])
            torch.cuda.synchronize()
            step = (time.perf_counter() - start) / 5
            w, images = trainer.pairs(1, torch.Generator().manual_seed(0))
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.evaluate(w, images)  # one image → w (DDIM) → frontal render, + the baseline
            torch.cuda.synchronize()
            _emit(
                part="diffusion",
                preset=preset,
                batch=config.batch_size,
                seconds_per_step=step,
                pairs_per_second=config.batch_size / step,
                image_to_avatar_seconds=time.perf_counter() - start,
                inference_steps=config.schedule.inference_steps,
                finite_losses=bool(torch.isfinite(torch.tensor(losses)).all()),
                peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30,
                device=device_name,
            )
            del trainer
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="gan,controlnet")
    parser.add_argument("--sd15", action="store_true")
    parser.add_argument("--paper-batches", default="4,32")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU")
    device_name = torch.cuda.get_device_name()
    parts = args.parts.split(",")
    if "gan" in parts:
        gan([int(b) for b in args.paper_batches.split(",")], device_name)
    if "controlnet" in parts:
        controlnet(args.sd15, device_name)
    if "diffusion" in parts:
        diffusion(device_name)


if __name__ == "__main__":
    main()
