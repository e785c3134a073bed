"""One worker's share of the style-space diffusion training (docs/method.md §4).

Pairs are drawn on the fly from the frozen generator (EMA weights): z → w at the frontal
camera → frontal render. The denoiser learns ε from (w_t, t, image embedding); the embedding is
dropped with probability p_drop so that one network also predicts the unconditional ε.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatar_platform.formats.model_folder import (
    DIFFUSION_FORMAT_VERSION,
    DIFFUSION_META,
    EMBEDDED_GENERATOR,
    EMBEDDED_GENERATOR_FILES,
    load_generator,
    model_fid,
    write_metrics,
)
from avatar_platform.formats.training_state import load_training_state, save_training_state
from avatar_platform.models.style_diffusion.denoiser import StyleDenoiser
from avatar_platform.models.style_diffusion.encoders import (
    build_image_encoder,
    load_image_encoder,
    save_image_encoder,
)
from avatar_platform.models.style_diffusion.schedule import sample_w, training_scheduler
from avatar_platform.pipelines.rendering import FRONT, cameras, render, to_uint8, ws_for
from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.gan.losses import average_gradients

HELD_OUT_SEED = 1_000_003  # held-out pairs come from their own seed stream, never trained on


def embed_generator(source: Path, folder: Path) -> None:
    """Copy the generator's EMA weights (and its metrics) into `folder/generator`."""
    target = folder / EMBEDDED_GENERATOR
    target.mkdir(parents=True, exist_ok=True)
    for name in EMBEDDED_GENERATOR_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


class DiffusionTrainer:
    """Encoder, denoiser, optimiser and step counter on one worker; the generator stays frozen."""

    def __init__(
        self,
        config: DiffusionTrainingConfig,
        generator_folder: str | Path,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        self.config, self.device = config, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.generator_folder = Path(generator_folder)
        self.G = load_generator(self.generator_folder, device=str(self.device))
        self.G.requires_grad_(False)
        torch.manual_seed(config.seed)  # the same initial weights on every worker
        self.encoder = build_image_encoder(config.encoder).to(self.device)
        self.denoiser = StyleDenoiser(
            config.denoiser.model_copy(
                update={"w_dim": self.G.config.w_dim, "cond_dim": self.encoder.embed_dim}
            )
        ).to(self.device)
        stats_rng = torch.Generator().manual_seed(config.seed + 7)
        w, _ = self.pairs(config.w_stats_samples, stats_rng, images=False)
        self.denoiser.set_w_statistics(w)
        params = list(self.denoiser.parameters())
        if self.encoder.trainable:
            params += list(self.encoder.parameters())
        self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.noise = training_scheduler(config.schedule)
        self.alphas = self.noise.alphas_cumprod.to(self.device)
        self.rng = torch.Generator().manual_seed(config.seed * 1000 + rank + 1)
        self.pool: tuple[torch.Tensor, torch.Tensor] | None = None
        self.step = 0

    @property
    def per_worker_batch(self) -> int:
        return self.config.batch_size // self.world_size

    @torch.no_grad()
    def pairs(self, n: int, rng: torch.Generator, images: bool = True, chunk: int = 64):
        """(w (n, w_dim), frontal renders (n, 3, R, R) in [-1, 1] or None)."""
        ws_all, images_all = [], []
        for start in range(0, n, chunk):
            z = torch.randn(min(chunk, n - start), self.G.config.z_dim, generator=rng)
            ws = ws_for(self.G, z, self.config.truncation_psi)
            ws_all.append(ws[:, 0])
            if images:
                c = cameras([FRONT] * len(z)).to(self.device, torch.float32)
                images_all.append(self.G.synthesis(ws, c)["image"].clamp(-1, 1))
        return torch.cat(ws_all), (torch.cat(images_all) if images else None)

    def training_pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh pairs, or n drawn from the worker's pool, of which random members are
        replaced by `pool_refresh` fresh pairs each step."""
        size = self.config.pair_pool
        if not size:
            return self.pairs(n, self.rng)
        if self.pool is None:
            self.pool = self.pairs(size, self.rng)
        w, images = self.pool
        if self.config.pool_refresh:
            fresh_w, fresh_images = self.pairs(self.config.pool_refresh, self.rng)
            slots = torch.randperm(size, generator=self.rng)[: len(fresh_w)].to(self.device)
            w[slots], images[slots] = fresh_w, fresh_images
        pick = torch.randint(0, size, (n,), generator=self.rng).to(self.device)
        return w[pick], images[pick]

    def denoising_loss(
        self,
        w: torch.Tensor,
        images: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The squared error of the denoiser's prediction (the clean normalised w, or ε) from
        x_t of DDPM's q(x_t | x_0 = normalised w)."""
        a = self.alphas[t][:, None]
        x0 = self.denoiser.normalize(w)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = x0 if self.config.schedule.prediction == "sample" else noise
        return F.mse_loss(self.denoiser(x_t, t, self.encoder(images), drop), target)

    def train_step(self) -> dict[str, float]:
        started = time.perf_counter()
        n = self.per_worker_batch
        w, images = self.training_pairs(n)
        noise = torch.randn(w.shape, generator=self.rng).to(self.device)
        t = torch.randint(0, self.config.schedule.num_train_timesteps, (n,), generator=self.rng)
        drop = torch.rand(n, generator=self.rng) < self.config.p_drop
        loss = self.denoising_loss(w, images, noise, t.to(self.device), drop.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.denoiser, self.world_size)
        if self.encoder.trainable:
            average_gradients(self.encoder, self.world_size)
        self.opt.step()
        self.step += 1
        seconds = time.perf_counter() - started
        return {"loss": float(loss.detach()), "pairs_per_second": n / seconds}

    # -- evaluation ----------------------------------------------------------------------------
    def held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pairs(self.config.eval_pairs, torch.Generator().manual_seed(HELD_OUT_SEED))

    def _sample(self, images: torch.Tensor) -> torch.Tensor:
        """w (B, w_dim) sampled from `images` with seed 0, the encoder in eval mode meanwhile."""
        training = self.encoder.training
        cond = self.encoder.eval()(images)
        self.encoder.train(training)  # a frozen CLIP stays in eval mode
        return sample_w(self.denoiser, cond, self.config.schedule, generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def evaluate(self, w: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
        """Reconstruction of held-out frontal renders: w error (normalised units) and the mean
        absolute pixel difference (0–1) between input and avatar front, beside the mean-w
        baseline (an avatar that ignores the image)."""
        w_hat = self._sample(images)
        mean = self.denoiser.w_mean.expand_as(w)
        out = {}
        for name, guess in (("", w_hat), ("_mean_baseline", mean)):
            error = (self.denoiser.normalize(guess) - self.denoiser.normalize(w)).square().mean()
            front = self.front_render(guess)
            out[f"eval/w_error{name}"] = float(error)
            out[f"eval/image_l1{name}"] = float((front - images).abs().mean() / 2)
        return out

    def front_render(self, w: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) frontal renders in [-1, 1] of w (B, w_dim)."""
        ws = w[:, None].expand(-1, self.G.mapping.num_ws, -1)
        c = cameras([FRONT] * len(w)).to(self.device, torch.float32)
        return self.G.synthesis(ws, c)["image"].clamp(-1, 1)

    @torch.no_grad()
    def comparison_grid(self, w: torch.Tensor, images: torch.Tensor, rows: int = 4) -> np.ndarray:
        """Rows = held-out inputs; columns = input, avatar front, left, back, right."""
        images, w = images[:rows], w[:rows]
        w_hat = self._sample(images)
        lines = []
        for image, guess in zip(to_uint8(images), w_hat, strict=True):
            ws = guess[None, None].expand(1, self.G.mapping.num_ws, -1)
            views = render(self.G, ws, [0.0, 90.0, 180.0, -90.0])
            lines.append(np.concatenate([image, *views], axis=1))
        return np.concatenate(lines, axis=0)

    # -- state on disk -------------------------------------------------------------------------
    def save(self, folder: Path, metrics: dict | None = None, grid: np.ndarray | None = None) -> None:
        """The diffusion model folder: denoiser, encoder, the embedded generator, diffusion.json,
        metrics.json (with the generator's FID), training_state.pt, eval.png (held-out inputs
        beside their avatars) when `grid` is given."""
        from PIL import Image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if grid is not None:
            Image.fromarray(grid).save(folder / "eval.png")
        self.denoiser.save_pretrained(folder)
        save_image_encoder(self.encoder, folder)
        embed_generator(self.generator_folder, folder)
        meta = {
            "kind": "styleavatar3d-diffusion",
            "format_version": DIFFUSION_FORMAT_VERSION,
            "step": self.step,
            "generator_source": str(self.generator_folder),
            "schedule": self.config.schedule.model_dump(mode="json"),
            "training": self.config.model_dump(mode="json"),
        }
        (folder / DIFFUSION_META).write_text(json.dumps(meta, indent=2) + "\n")
        fid = model_fid(folder / EMBEDDED_GENERATOR)  # the GAN's FID travels on with it
        write_metrics(folder, {**({"fid": fid} if fid is not None else {}), **(metrics or {})},
                      keep_existing=False)  # fmt: skip
        save_training_state(
            folder, {"step": self.step, "opt": self.opt.state_dict(), "rng": self.rng.get_state()}
        )

    def load(self, folder: Path) -> None:
        folder = Path(folder)
        self.denoiser.load_state_dict(StyleDenoiser.from_pretrained(folder).state_dict())
        if self.encoder.trainable:
            self.encoder.load_state_dict(load_image_encoder(folder).state_dict())
        self.denoiser.to(self.device)
        self.encoder.to(self.device)
        state = load_training_state(folder, self.device, "diffusion")
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"].cpu())
        self.step = int(state["step"])
