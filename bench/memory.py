"""Where a GAN training step's memory goes, by part, on any device (issue #14).

One full `GanTrainer.train_step` (G step with density regularisation, D step with R1) runs under
`torch.autograd.graph.saved_tensors_hooks`. Every tensor that autograd saves for the backward pass
is counted once per storage (views and tensors saved twice share it), attributed to the part of
the model that saved it, and tracked while it is alive, so that the peak of saved activations is
known as well as the total per part:

    mapping, synthesis (the StyleGAN2 backbone of the planes), triplane_sampling, decoder,
    compositing (ray marching, importance sampling), superresolution, background, D (its forward
    on the real and fake inputs), r1 (the double backward), density_reg (its own forward),
    augment (blur, ADA), other (losses, resizes).

`peak_gib` = weights (G, G_ema, D) + gradients (G, D) + Adam state (2 × G and D) + the peak of
live saved activations: the memory of one step, without the allocator's temporaries. On CUDA
`cuda_max_allocated_gib` is `torch.cuda.max_memory_allocated` over the same step.

`--discard` keeps nothing: saved tensors are counted, then replaced by zeros of their shape when
backward asks for them, so that shapes larger than this machine's memory can be measured (the
step's gradients are then meaningless; the accounting is the same). Usage:

    .venv/bin/python bench/memory.py --preset paper --batch 1 --batch 4 --discard
    .venv/bin/python bench/memory.py --preset demo --batch 8 --set memory.ray_chunk=4096

Prints one JSON object per (preset, batch, settings) with at least preset, batch, device and
peak_gib, and the per-part table in GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
import weakref

import numpy as np
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

GIB = 1024**3
PHASE_PARTS = ("r1", "density_reg")  # everything inside these counts for them


class Ledger:
    """Saved-tensor bytes by part, once per storage, with the live total and its peak."""

    def __init__(self, discard: bool, exclude: set[int]):
        self.discard, self.exclude = discard, exclude
        self.stack: list[str] = []
        self.by_part: dict[str, int] = {}
        self.refs: dict[int, int] = {}
        self.seen: dict[int, tuple[int, weakref.ref]] = {}
        self.generation = 0
        self.aliases: dict[int, tuple[int, weakref.ref]] = {}
        self.live = self.peak = 0

    def part(self) -> str:
        for name in reversed(self.stack):
            if name in PHASE_PARTS:
                return name
        return self.stack[-1] if self.stack else "other"

    @contextlib.contextmanager
    def inside(self, name: str):
        self.stack.append(name)
        try:
            yield
        finally:
            self.stack.pop()

    def pack(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address in self.exclude or tensor.device.type == "meta":  # weights are counted apart
            return tensor
        # with --discard nothing holds the tensor: once it is gone, its address may be reused
        # by a new storage, which must count again
        seen = self.seen.get(address)
        alias = self.aliases.get(address)
        if alias is not None and alias[1]() is not None:  # the stand-in of a saved tensor
            seen = alias
        elif seen is None or seen[1]() is None:
            # the tensor that owns the storage: alive while any view of it is
            owner = tensor._base if tensor._base is not None else tensor
            self.seen[address] = seen = (self.generation, weakref.ref(owner))
            self.generation += 1
        key = seen[0]
        size = storage.nbytes()
        if self.refs.get(key, 0) == 0:
            self.by_part[self.part()] = self.by_part.get(self.part(), 0) + size
            self.live += size
            self.peak = max(self.peak, self.live)
        self.refs[key] = self.refs.get(key, 0) + 1
        return _Saved(self, key, size, tensor)

    def unpack(self, saved):
        if not isinstance(saved, _Saved):
            return saved
        if saved.tensor is not None:
            return saved.tensor
        # a stand-in that the double backward (R1) may save again: it counts as the original
        stand_in = torch.zeros(saved.shape, dtype=saved.dtype, device=saved.device)
        self.aliases[stand_in.untyped_storage().data_ptr()] = (saved.key, weakref.ref(stand_in))
        return stand_in

    def release(self, key: int, size: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= size


class _Saved:
    """What the graph holds instead of a saved tensor; its end (the graph freed) is the tensor's."""

    def __init__(self, ledger: Ledger, key: int, size: int, tensor: torch.Tensor):
        self.ledger, self.key, self.size = ledger, key, size
        self.shape, self.dtype, self.device = tensor.shape, tensor.dtype, tensor.device
        self.tensor = None if ledger.discard else tensor

    def __del__(self):
        self.ledger.release(self.key, self.size)


def instrument(trainer, ledger: Ledger) -> list:
    """Part markers: forward hooks on the networks, wrappers round the functions that are parts."""
    from avatar_platform.models.eg3d import generator as generator_module
    from avatar_platform.pipelines.training.gan import trainer as gan_trainer

    handles = []
    modules = {
        "mapping": trainer.G.mapping,
        "synthesis": trainer.G.backbone,
        "decoder": trainer.G.decoder,
        "superresolution": trainer.G.superresolution,
        "D": trainer.D,
    }
    if trainer.G.background is not None:
        modules["background"] = trainer.G.background
    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: ledger.stack.append(n)))
        handles.append(module.register_forward_hook(lambda *_: ledger.stack.pop() and None))

    def wrap(owner, attr: str, name: str):
        original = getattr(owner, attr)

        def wrapped(*args, **kwargs):
            with ledger.inside(name):
                return original(*args, **kwargs)

        setattr(owner, attr, wrapped)
        handles.append(_Restore(owner, attr, original))

    wrap(generator_module, "sample_from_planes", "triplane_sampling")
    wrap(generator_module, "render_rays", "compositing")
    wrap(generator_module, "render_rays_checkpointed", "compositing")
    wrap(gan_trainer, "r1_penalty", "r1")
    wrap(gan_trainer, "density_l1", "density_reg")
    wrap(gan_trainer, "augment", "augment")
    wrap(gan_trainer, "blur", "augment")
    return handles


class _Restore:
    def __init__(self, owner, attr, original):
        self.owner, self.attr, self.original = owner, attr, original

    def remove(self):
        setattr(self.owner, self.attr, self.original)


def state_bytes(trainer) -> dict[str, int]:
    """Weights, gradients and Adam state of one training step (fp32, as the trainer keeps them)."""

    def size(module):
        return sum(p.numel() * p.element_size() for p in module.parameters())

    g, d, ema = size(trainer.G), size(trainer.D), size(trainer.G_ema)
    return {"weights": g + d + ema, "gradients": g + d, "optimiser": 2 * (g + d)}


def batch_for(config, batch: int, seed: int = 0) -> dict:
    from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles

    size = config.generator.img_resolution
    rng = np.random.default_rng(seed)
    yaws = rng.uniform(-180, 180, batch)
    cams = np.stack([camera_from_angles(float(y), 0.0, CameraConfig()) for y in yaws])
    g = torch.Generator().manual_seed(seed)
    out = {
        "image": torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8),
        "yaw": torch.tensor(yaws, dtype=torch.float32),
        "pitch": torch.zeros(batch),
        "camera": torch.tensor(cams).float(),
    }
    if config.discriminator.mask_channel:
        out["mask"] = torch.randint(0, 2, (batch, 1, size, size), generator=g, dtype=torch.uint8) * 255
    return out


def settings(preset: str, overrides: list[str], batch: int):
    import yaml

    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    data = resolve_config(GanTrainingConfig, "gan", preset).model_dump()
    for item in overrides:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    # one worker's step: `batch` images per GPU; R1 and density regularisation are both due
    data.update(batch_size=batch, workers=1, r1_interval=1, density_reg_interval=1)
    return GanTrainingConfig.model_validate(data)


def chunk_bytes(trainer, batch: int) -> int:
    """What one checkpointed chunk of rays saves while backward recomputes it (the checkpoint's
    own saved tensors are out of the ledger's sight): counted on a chunk rendered plainly. Added
    to the peak in full, an upper bound."""
    from avatar_platform.models.eg3d.volume_renderer import camera_rays, render_rays

    cfg, G = trainer.config.generator, trainer.G
    data = batch_for(trainer.config, batch)
    z = torch.randn(batch, cfg.z_dim)
    with torch.no_grad():
        planes = G.planes(G.map(z.to(trainer.device), data["camera"].to(trainer.device)))
    planes.requires_grad_(True)
    origins, dirs = camera_rays(data["camera"].to(trainer.device), cfg.neural_rendering_resolution)
    window = slice(0, trainer.config.memory.ray_chunk)
    # the planes are the renderer's input, counted with the synthesis already
    exclude = {p.untyped_storage().data_ptr() for p in G.parameters()} | {planes.untyped_storage().data_ptr()}
    ledger = Ledger(False, exclude)
    with torch.autograd.graph.saved_tensors_hooks(ledger.pack, ledger.unpack):
        out = render_rays(
            lambda pts: G.field(planes, pts),
            origins[:, window],
            dirs[:, window],
            depth_samples=cfg.depth_samples,
            importance_samples=cfg.importance_samples,
            ray_start=cfg.ray_start,
            ray_end=cfg.ray_end,
            perturb=True,
        )
    peak = ledger.peak
    del out
    return peak


def measure(preset: str, batch: int, device: str, discard: bool, overrides: list[str]) -> dict:
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    config = settings(preset, overrides, batch)
    trainer = GanTrainer(config, device)
    params = {
        p.untyped_storage().data_ptr()
        for m in (trainer.G, trainer.D, trainer.G_ema)
        for p in list(m.parameters()) + list(m.buffers())
    }
    ledger = Ledger(discard, params)
    data = batch_for(config, batch)
    handles = instrument(trainer, ledger)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        with torch.autograd.graph.saved_tensors_hooks(ledger.pack, ledger.unpack):
            trainer.train_step(data)
    finally:
        for handle in handles:
            handle.remove()
    seconds = time.perf_counter() - started
    state = state_bytes(trainer)
    recompute = chunk_bytes(trainer, batch) if config.memory.checkpoint_renderer else 0
    record = {
        "preset": preset,
        "batch": batch,
        "device": device,
        "settings": overrides,
        "discard": discard,
        "peak_gib": (sum(state.values()) + ledger.peak + recompute) / GIB,
        "activations_peak_gib": ledger.peak / GIB,
        "recompute_chunk_gib": recompute / GIB,
        "activations_total_gib": sum(ledger.by_part.values()) / GIB,
        **{f"{k}_gib": v / GIB for k, v in state.items()},
        "parts_gib": {k: v / GIB for k, v in sorted(ledger.by_part.items(), key=lambda kv: -kv[1])},
        "step_seconds": seconds,
        "process_max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }
    if device.startswith("cuda"):
        record["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, action="append", help="images per GPU (repeatable)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--discard", action="store_true", help="count saved tensors, keep none")
    parser.add_argument("--set", action="append", default=[], help="gan.KEY=VALUE (dotted, YAML)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for batch in args.batch or [1, 4]:
        if batch < 1:
            sys.exit(f"--batch {batch}: expected a number of images ≥ 1")
        print(json.dumps(measure(args.preset, batch, args.device, args.discard, args.set)), flush=True)


if __name__ == "__main__":
    main()
