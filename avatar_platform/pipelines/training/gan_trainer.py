"""One EG3D training step and the training state, in plain PyTorch (Ray wires it in gan_loop.py).

Per step (METHOD.md §2): G — non-saturating logistic loss through the pose-conditioned dual
discriminator; every `density_reg_interval` steps the density L1 regulariser; D — logistic loss on
real and fake, lazy R1 on both real inputs every `r1_interval` steps; then the G EMA.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avatar_platform.models.discriminator import DualDiscriminator, pose_label
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.pipelines.training.gan_config import GanTrainingConfig
from avatar_platform.pipelines.training.gan_losses import (
    average_gradients,
    blur,
    blur_sigma,
    density_l1,
    downsample,
    ema_beta,
    ema_update,
    mirror_augment,
    r1_penalty,
)

STATE_FORMAT_VERSION = 1


class GanTrainer:
    """G, G_ema, D, their optimisers and the step counter."""

    def __init__(self, config: GanTrainingConfig, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1):  # fmt: skip
        self.config, self.device = config, torch.device(device)
        self.rank, self.world_size = rank, world_size
        torch.manual_seed(config.seed)  # the same initial weights on every worker
        self.G = TriPlaneGenerator(config.generator).to(self.device)
        self.D = DualDiscriminator(config.discriminator).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=config.betas)
        self.step = 0
        self.rng = torch.Generator().manual_seed(config.seed * 1000 + rank)
        self.autocast = config.mixed_precision and self.device.type == "cuda"

    @property
    def per_worker_batch(self) -> int:
        return self.config.batch_size // self.world_size

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast)

    def _label(self, yaw, pitch, camera):
        cond = self.config.discriminator.conditioning
        return pose_label(yaw, pitch, camera, cond, self.rng).to(self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One G and one D update on `batch` (image (B, 3, R, R) in [-1, 1], yaw, pitch (B,),
        camera (B, 25)); returns scalar metrics."""
        cfg, started = self.config, time.perf_counter()
        real = batch["image"].to(self.device)
        # datasets hold uint8; tests and in-memory callers may pass [-1, 1] floats
        real = real.float() / 127.5 - 1.0 if real.dtype == torch.uint8 else real.float()
        yaw = batch["yaw"].to(self.device, torch.float32)
        pitch = batch["pitch"].to(self.device, torch.float32)
        camera = batch["camera"].to(self.device, torch.float32)
        if cfg.mirror:
            real, yaw, camera = mirror_augment(real, yaw, camera, self.rng)
        n = real.shape[0]
        kimg = self.step * cfg.batch_size / 1000.0
        sigma = blur_sigma(kimg, cfg.blur_sigma, cfg.blur_fade_kimg)
        # generated images are rendered at the dataset's cameras; the mapping sometimes sees
        # another camera, so that identity does not get tied to pose (EG3D's swap)
        perm = torch.randperm(n, generator=self.rng).to(self.device)
        c_gen, yaw_gen, pitch_gen = camera[perm], yaw[perm], pitch[perm]
        swap = (torch.rand(n, generator=self.rng) < cfg.camera_swap_prob).to(self.device)
        other = camera[torch.randperm(n, generator=self.rng).to(self.device)]
        c_map = torch.where(swap[:, None], other, c_gen)
        z = torch.randn(n, cfg.generator.z_dim, generator=self.rng).to(self.device)
        label_fake = self._label(yaw_gen, pitch_gen, c_gen)
        metrics: dict[str, float] = {}

        # -- G: fool D ------------------------------------------------------------------------
        self.D.requires_grad_(False)
        with self._amp():
            ws = self.G.map(z, c_map)
            fake = self.G.synthesis(ws, c_gen, perturb=True, generator=self.rng)
            logits = self.D(blur(fake["image"], sigma), blur(fake["image_raw"], sigma), label_fake)
            loss_g = F.softplus(-logits).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if cfg.density_reg > 0 and self.step % cfg.density_reg_interval == 0:
            with self._amp():
                ws_reg = self.G.map(z, c_map)
                loss_density = density_l1(self.G.density, ws_reg, cfg.generator.box_warp,
                                          cfg.density_reg_points, cfg.density_reg_perturb,
                                          self.rng)  # fmt: skip
            (loss_density.float() * cfg.density_reg * cfg.density_reg_interval).backward()
            metrics["loss/density_reg"] = float(loss_density.detach())
        average_gradients(self.G, self.world_size)
        self.opt_g.step()
        self.G.mapping.update_w_avg(ws.detach().float())
        self.D.requires_grad_(True)

        # -- D: real vs fake ------------------------------------------------------------------
        real_raw = downsample(real, cfg.generator.neural_rendering_resolution)
        label_real = self._label(yaw, pitch, camera)
        with self._amp():
            logits_fake = self.D(blur(fake["image"].detach(), sigma),
                                 blur(fake["image_raw"].detach(), sigma), label_fake)  # fmt: skip
            logits_real = self.D(blur(real, sigma), blur(real_raw, sigma), label_real)
            loss_d = (
                F.softplus(logits_fake).float().mean() + F.softplus(-logits_real).float().mean()
            )
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0:
            image = blur(real, sigma).detach().requires_grad_(True)
            raw = blur(real_raw, sigma).detach().requires_grad_(True)
            penalty = r1_penalty(self.D(image, raw, label_real), [image, raw]).mean()
            (penalty * (cfg.r1_gamma / 2) * cfg.r1_interval).backward()
            metrics["loss/r1"] = float(penalty.detach())
        average_gradients(self.D, self.world_size)
        self.opt_d.step()

        ema_update(self.G_ema, self.G, ema_beta(cfg.batch_size, cfg.ema_kimg))
        self.step += 1
        seconds = time.perf_counter() - started
        metrics.update({
            "loss/G": float(loss_g.detach()),
            "loss/D": float(loss_d.detach()),
            "D/real": float(logits_real.detach().float().mean()),
            "D/fake": float(logits_fake.detach().float().mean()),
            "blur_sigma": sigma,
            "kimg": self.step * cfg.batch_size / 1000.0,
            "images_per_second": cfg.batch_size / seconds,
            "seconds_per_kimg": seconds * 1000.0 / cfg.batch_size,
        })  # fmt: skip
        return metrics

    # -- state on disk -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """The model folder: G, G_ema, D as json + safetensors, training_state.pt, config.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.G.save_pretrained(folder, "generator")
        self.G_ema.save_pretrained(folder, "generator_ema")
        self.D.save_pretrained(folder, "discriminator")
        state = {
            "format_version": STATE_FORMAT_VERSION,
            "step": self.step,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
        }
        torch.save(state, folder / "training_state.pt")
        config = {"kind": "styleavatar3d-gan", "step": self.step,
                  "training": self.config.model_dump(mode="json")}  # fmt: skip
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def load(self, folder: Path) -> None:
        """Continue from a model folder written by `save` (weights and optimiser state)."""
        folder = Path(folder)
        for attr, name in (("G", "generator"), ("G_ema", "generator_ema"), ("D", "discriminator")):
            cls = type(getattr(self, attr))
            loaded = cls.from_pretrained(folder, name).to(self.device)
            getattr(self, attr).load_state_dict(loaded.state_dict())
        state = torch.load(folder / "training_state.pt", map_location=self.device,
                           weights_only=True)  # fmt: skip
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"].cpu())
        self.step = int(state["step"])
