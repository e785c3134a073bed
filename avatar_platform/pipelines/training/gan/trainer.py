"""One EG3D training step and the training state, in plain PyTorch (Ray wires it in gan/loop.py).

Per step (docs/method.md §2): G — non-saturating logistic loss through the pose-conditioned dual
discriminator; every `density_reg_interval` steps the density L1 regulariser; D — logistic loss on
real and fake, lazy R1 on both real inputs every `r1_interval` steps; then the G EMA.
With `discriminator.mask_channel` D also judges the foreground mask (real) against the generator's
opacity (fake); with `augment` D's inputs are augmented alike for real and fake (ADA).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avatar_platform.formats.model_folder import GAN_NETWORKS
from avatar_platform.formats.training_state import load_training_state, save_training_state
from avatar_platform.models.discriminator import DualDiscriminator, pose_label
from avatar_platform.models.eg3d.background import resize
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.models.eg3d.volume_renderer import ray_noise
from avatar_platform.pipelines.training.gan.augment import adjust_p, augment
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.losses import (
    average_gradients,
    blur,
    blur_sigma,
    density_l1,
    density_points,
    downsample,
    ema_beta,
    ema_update,
    mirror_augment,
    r1_penalty,
)


class GanTrainer:
    """G, G_ema, D, their optimisers and the step counter."""

    def __init__(
        self,
        config: GanTrainingConfig,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        self.config, self.device = config, torch.device(device)
        self.rank, self.world_size = rank, world_size
        torch.manual_seed(config.seed)  # the same initial weights on every worker
        self.G = TriPlaneGenerator(config.generator).to(self.device)
        self.D = DualDiscriminator(config.discriminator).to(self.device)
        self.D.checkpoint_blocks = config.memory.checkpoint_discriminator
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if config.memory.compile:  # in place: the weights keep their names on disk
            self.G.decoder.compile()
            self.G.backbone.compile()
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=config.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=config.betas)
        self.step = 0
        self.rng = torch.Generator().manual_seed(config.seed * 1000 + rank)
        self.autocast = config.mixed_precision and self.device.type == "cuda"
        self.augment_p = config.augment.p if config.augment.mode != "off" else 0.0
        self._real_signs: list[float] = []  # ADA: sign(D(real)) since the last adjustment
        self.parent: str | None = None  # the model it started from (`train gan --init`)

    @property
    def per_worker_batch(self) -> int:
        return self.config.batch_size // self.world_size

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast)

    def _label(self, yaw, pitch, camera):
        cond = self.config.discriminator.conditioning
        return pose_label(yaw, pitch, camera, cond, self.rng).to(self.device)

    def _d_inputs(
        self, image: torch.Tensor, raw: torch.Tensor, mask: torch.Tensor | None, sigma: float
    ) -> tuple:
        """What D sees: blurred (each at its own resolution), brought to D's resolution, then
        augmented as one stack so that a sample's image, raw image and mask move together."""
        size = image.shape[-1]
        parts = [blur(image, sigma), resize(blur(raw, sigma), size)]
        if mask is not None:
            parts.append(resize(blur(mask, sigma), size))
        if self.augment_p <= 0:
            return (*parts[:2], parts[2] if mask is not None else None)
        stacked = augment(torch.cat(parts, dim=1), self.augment_p, self.config.augment, 6, self.rng)
        return stacked[:, :3], stacked[:, 3:6], stacked[:, 6:7] if mask is not None else None

    def _real_mask(self, batch: dict, size: int) -> torch.Tensor | None:
        """The dataset's foreground masks (B, 1, R, R) in [-1, 1], when D judges masks."""
        if not self.config.discriminator.mask_channel:
            return None
        if batch.get("mask") is None:
            raise ValueError(
                "discriminator.mask_channel is on but the batch has no 'mask': train on a dataset "
                "with masks (avatar-platform generate writes them) or set "
                "discriminator.mask_channel: false"
            )
        mask = batch["mask"].to(self.device)
        mask = mask.float() / 127.5 - 1.0 if mask.dtype == torch.uint8 else mask.float() * 2 - 1
        return resize(mask, size)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One G and one D update on `batch` (image (B, 3, R, R) in [-1, 1] or uint8, yaw, pitch
        (B,), camera (B, 25), and with a mask channel mask (B, 1, R, R) uint8 or [0, 1]);
        returns scalar metrics."""
        cfg, started = self.config, time.perf_counter()
        real = batch["image"].to(self.device)
        # datasets hold uint8; tests and in-memory callers may pass [-1, 1] floats
        real = real.float() / 127.5 - 1.0 if real.dtype == torch.uint8 else real.float()
        real_mask = self._real_mask(batch, real.shape[-1])
        yaw = batch["yaw"].to(self.device, torch.float32)
        pitch = batch["pitch"].to(self.device, torch.float32)
        camera = batch["camera"].to(self.device, torch.float32)
        if cfg.mirror:
            both = real if real_mask is None else torch.cat([real, real_mask], dim=1)
            both, yaw, camera = mirror_augment(both, yaw, camera, self.rng)
            real, real_mask = both[:, :3], (None if real_mask is None else both[:, 3:])
        n = real.shape[0]
        kimg = self.step * cfg.batch_size / 1000.0
        # the blur steadies a GAN learning from nothing; a fine-tune's parent is past that stage
        # (EG3D's transfer resumes at the parent's kimg, where the blur is gone). Restarted at
        # σ = 10 it cost the starter's fine-tune FID 13.6 → 45.6 in 100 steps (BENCHMARKS.md)
        sigma = 0.0 if self.parent else blur_sigma(kimg, cfg.blur_sigma, cfg.blur_fade_kimg)
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

        def fake_mask(out: dict) -> torch.Tensor | None:
            return out["opacity"] * 2 - 1 if real_mask is not None else None

        # memory.micro_batch: forward and backward a slice at a time, gradients accumulated
        # (each slice's loss weighted by its share of the batch). The ray and density noise is
        # drawn for the whole batch beforehand, so the slices see what one pass would have seen;
        # ADA's augmentations are drawn slice by slice (the same distribution)
        micro = cfg.memory.micro_batch or n
        slices = [slice(i, min(i + micro, n)) for i in range(0, n, micro)]
        shares = [(part.stop - part.start) / n for part in slices]
        gen = cfg.generator
        chunk = cfg.memory.ray_chunk if cfg.memory.checkpoint_renderer else None
        noise = ray_noise(
            n,
            gen.neural_rendering_resolution**2,
            gen.depth_samples,
            gen.importance_samples,
            self.device,
            self.rng,
        )

        # -- G: fool D ------------------------------------------------------------------------
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g = torch.zeros((), device=self.device)
        fakes, ws_seen = [], []
        for part, share in zip(slices, shares, strict=True):
            with self._amp():
                ws = self.G.map(z[part], c_map[part])
                fake = self.G.synthesis(
                    ws,
                    c_gen[part],
                    perturb=True,
                    generator=self.rng,
                    checkpoint_rays=chunk,
                    noise=(noise[0][part], noise[1][part]),
                )
                inputs = self._d_inputs(fake["image"], fake["image_raw"], fake_mask(fake), sigma)
                logits = self.D(*inputs[:2], label_fake[part], inputs[2])
                loss = F.softplus(-logits).float().mean()
            (loss * share).backward()
            loss_g += loss.detach() * share
            fakes.append({k: v.detach() for k, v in fake.items()})
            ws_seen.append(ws.detach())
        if cfg.density_reg > 0 and self.step % cfg.density_reg_interval == 0:
            where = density_points(n, cfg.density_reg_points, gen.box_warp, cfg.density_reg_perturb, self.rng)
            loss_density = torch.zeros((), device=self.device)
            for part, share in zip(slices, shares, strict=True):
                with self._amp():
                    ws_reg = self.G.map(z[part], c_map[part])
                    loss = density_l1(
                        self.G.density,
                        ws_reg,
                        gen.box_warp,
                        cfg.density_reg_points,
                        cfg.density_reg_perturb,
                        where=where[part],
                    )
                (loss.float() * cfg.density_reg * cfg.density_reg_interval * share).backward()
                loss_density += loss.detach().float() * share
            metrics["loss/density_reg"] = float(loss_density)
        average_gradients(self.G, self.world_size)
        self.opt_g.step()
        self.G.mapping.update_w_avg(torch.cat(ws_seen).float())
        self.D.requires_grad_(True)

        # -- D: real vs fake ------------------------------------------------------------------
        real_raw = downsample(real, gen.neural_rendering_resolution)
        if real_mask is not None and cfg.mask_resolution == "raw":
            # brought back up to D's resolution in _d_inputs, as the fake's opacity is
            real_mask = downsample(real_mask, gen.neural_rendering_resolution)
        label_real = self._label(yaw, pitch, camera)
        detached = {k: torch.cat([f[k] for f in fakes]) for k in fakes[0]}
        r1_due = cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = torch.zeros((), device=self.device)
        penalty_sum = torch.zeros((), device=self.device)
        all_fake, all_real = [], []
        for part, share in zip(slices, shares, strict=True):
            fake_part = {k: v[part] for k, v in detached.items()}
            fake_inputs = self._d_inputs(
                fake_part["image"], fake_part["image_raw"], fake_mask(fake_part), sigma
            )
            # R1 is taken with respect to D's inputs before blur and augmentation (EG3D, ADA)
            real_parts = [real[part], real_raw[part]] + ([real_mask[part]] if real_mask is not None else [])
            if r1_due:
                real_parts = [x.detach().requires_grad_(True) for x in real_parts]
            with self._amp():
                logits_fake = self.D(*fake_inputs[:2], label_fake[part], fake_inputs[2])
                real_inputs = self._d_inputs(
                    real_parts[0], real_parts[1], real_parts[2] if real_mask is not None else None, sigma
                )
                logits_real = self.D(*real_inputs[:2], label_real[part], real_inputs[2])
                loss = F.softplus(logits_fake).float().mean() + F.softplus(-logits_real).float().mean()
            total = loss
            if r1_due:
                penalty = r1_penalty(logits_real, real_parts).mean()
                total = loss + penalty * (cfg.r1_gamma / 2) * cfg.r1_interval
                penalty_sum += penalty.detach() * share
            (total * share).backward()
            loss_d += loss.detach() * share
            all_fake.append(logits_fake.detach())
            all_real.append(logits_real.detach())
        if r1_due:
            metrics["loss/r1"] = float(penalty_sum)
        logits_fake, logits_real = torch.cat(all_fake), torch.cat(all_real)
        average_gradients(self.D, self.world_size)
        self.opt_d.step()
        self._adapt_augment(logits_real)

        ema_update(self.G_ema, self.G, ema_beta(cfg.batch_size, cfg.ema_kimg))
        self.step += 1
        seconds = time.perf_counter() - started
        metrics.update(
            {
                "loss/G": float(loss_g.detach()),
                "loss/D": float(loss_d.detach()),
                "D/real": float(logits_real.detach().float().mean()),
                "D/fake": float(logits_fake.detach().float().mean()),
                "blur_sigma": sigma,
                "augment_p": self.augment_p,
                "kimg": self.step * cfg.batch_size / 1000.0,
                "images_per_second": cfg.batch_size / seconds,
                "seconds_per_kimg": seconds * 1000.0 / cfg.batch_size,
            }
        )
        return metrics

    def _adapt_augment(self, logits_real: torch.Tensor) -> None:
        """ADA: every `augment.interval` steps move p by E[sign(D(real))] against the target
        (averaged over the workers, so that every rank keeps the same p)."""
        aug = self.config.augment
        if aug.mode != "ada":
            return
        self._real_signs.append(float(torch.sign(logits_real.detach().float()).mean()))
        if (self.step + 1) % aug.interval:
            return
        signs = torch.tensor(self._real_signs, dtype=torch.float64)
        if self.world_size > 1:
            import torch.distributed as dist

            signs = signs.to(self.device)
            dist.all_reduce(signs)
            signs = signs.cpu() / self.world_size
        images = aug.interval * self.config.batch_size
        self.augment_p = adjust_p(self.augment_p, float(signs.mean()), images, aug)
        self._real_signs.clear()

    # -- state on disk -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """The model folder: G, G_ema, D as json + safetensors, training_state.pt, config.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for attr, stem in GAN_NETWORKS:
            getattr(self, attr).save_pretrained(folder, stem)
        state = {
            "step": self.step,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "augment_p": self.augment_p,
        }
        save_training_state(folder, state)
        config = {
            "kind": "styleavatar3d-gan",
            "step": self.step,
            "parent": self.parent,
            "training": self.config.model_dump(mode="json"),
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def load(self, folder: Path) -> None:
        """Continue from a model folder written by `save` (weights and optimiser state)."""
        folder = Path(folder)
        for attr, name in GAN_NETWORKS:
            cls = type(getattr(self, attr))
            loaded = cls.from_pretrained(folder, name).to(self.device)
            getattr(self, attr).load_state_dict(loaded.state_dict())
        state = load_training_state(folder, self.device, "GAN")
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"].cpu())
        self.step = int(state["step"])
        self.augment_p = float(state.get("augment_p", self.augment_p))
        if (folder / "config.json").is_file():
            self.parent = json.loads((folder / "config.json").read_text()).get("parent")
