"""Picture → a faithful avatar (issue #16): the style diffusion's w as the starting point, a short
projection of w (or w+) onto the picture, optionally with the camera's yaw and pitch estimated
with it, then pivotal tuning (PTI, Roich et al. 2021) of a copy of the generator around that w.

The diffusion alone lands in the right neighbourhood without any pose estimation; the projection
and the tuning then fit the picture. The loss is a pixel loss plus a perceptual loss: VGG16
features when their weights are on this machine (`$AVATAR_HOME/weights/vgg16-397923af.pth`),
otherwise a fixed random CNN's (documented, and named in every output as the features used).

`sample --image … --refine N [--tune M]` calls `refine`; the result is saved by `save_refined`
as a GAN model folder of its own (the tuned generator, its pivot w, a card naming the input's
hash), which `sample --model`, the registry and `serve` take like any GAN.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.avatar_spec import MAX_REFINE_STEPS, MAX_TUNE_STEPS
from avatar_platform.pipelines.poses.camera import CameraConfig, intrinsics
from avatar_platform.pipelines.rendering import FRONT, cameras

VGG_FILE = "vgg16-397923af.pth"
PIVOT_FILE = "pivot.safetensors"
AVATAR_CARD = "avatar.json"
PERCEPTUAL_WEIGHT = 1.0
LOCALITY_WEIGHT = 0.1  # PTI's λ for its locality regulariser
LOCALITY_SHARE = 0.5  # how far from the pivot towards a random w the locality codes lie


@dataclass
class RefineResult:
    """The refined avatar: its pivot ws (1, num_ws, w_dim), the camera (degrees) it was fitted
    at, the generator that renders it (the tuned copy, or the source when not tuned), every
    step's losses, the perceptual features used and where the projection started."""

    ws: torch.Tensor
    yaw: float
    pitch: float
    generator: torch.nn.Module
    losses: list[dict] = field(default_factory=list)
    features: str = ""
    start: str = ""
    tuned: bool = False
    ws_start: torch.Tensor | None = None


def check_steps(refine_steps: int, tune_steps: int) -> None:
    """One clear error for a step count out of range (nothing is loaded or written before it)."""
    for name, value, limit in (
        ("--refine", refine_steps, MAX_REFINE_STEPS),
        ("--tune", tune_steps, MAX_TUNE_STEPS),
    ):
        if not 0 <= value <= limit:
            raise AvatarPlatformError(
                f"{name} {value} is out of range",
                expected=f"0 to {limit} steps",
                fix=f"pass {name} between 0 and {limit} (100–300 is typical)",
            )


# -- the camera as a function of (yaw, pitch), differentiable ------------------------------------
def camera_from_angles_torch(yaw: torch.Tensor, pitch: torch.Tensor, config: CameraConfig) -> torch.Tensor:
    """(1, 25) EG3D camera for yaw/pitch in degrees (0-d tensors): the same camera as
    poses.camera.camera_from_angles, with gradients to both angles."""
    yaw_r, pitch_r = torch.deg2rad(yaw), torch.deg2rad(pitch)
    look_at = torch.tensor(config.look_at, dtype=torch.float32)
    offset = torch.stack(
        [torch.cos(pitch_r) * torch.sin(yaw_r), torch.sin(pitch_r), torch.cos(pitch_r) * torch.cos(yaw_r)]
    )
    position = look_at + config.radius * offset
    forward = F.normalize(look_at - position, dim=0)
    right = F.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward], dim=1)  # columns
    top = torch.cat([rotation, position[:, None]], dim=1)
    cam2world = torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]])], dim=0)
    k = torch.tensor(intrinsics(config.focal), dtype=torch.float32)
    return torch.cat([cam2world.reshape(-1), k.reshape(-1)])[None]


# -- the perceptual features ---------------------------------------------------------------------
class PerceptualFeatures(torch.nn.Module):
    """Feature maps at a few depths for a perceptual distance: VGG16's (conv1_2 … conv4_3) from a
    local weights file, else a fixed random CNN (seed 0, the same everywhere). `name` says which."""

    def __init__(self, weights: Path | None = None):
        super().__init__()
        from avatar_platform.core.paths import platform_home

        weights = Path(weights) if weights else platform_home() / "weights" / VGG_FILE
        if weights.is_file():
            from torchvision.models import vgg16

            model = vgg16(weights=None)
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            self.layers = model.features[:23].eval()
            self.taps = (3, 8, 15, 22)
            self.name = "vgg16"
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))
        else:
            gen = torch.Generator().manual_seed(0)
            widths, convs = (3, 32, 64, 128), []
            for i in range(3):
                conv = torch.nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False)
                conv.weight.data = torch.randn(conv.weight.shape, generator=gen) / math.sqrt(9 * widths[i])
                convs += [conv, torch.nn.LeakyReLU(0.2), torch.nn.AvgPool2d(2)]
            self.layers = torch.nn.Sequential(*convs)
            self.taps = (1, 4, 7)
            self.name = "random-cnn (fallback: no VGG16 weights on this machine)"
            self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
            self.register_buffer("std", torch.full((1, 3, 1, 1), 0.5))
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] → unit-normalised feature maps per tap."""
        x = ((images + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                out.append(F.normalize(x, dim=1))
        return out

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared distance of the normalised features (LPIPS without its learned weights)."""
        return sum(((fa - fb) ** 2).sum(dim=1).mean() for fa, fb in zip(self(a), self(b), strict=True))


def reconstruction_loss(
    image: torch.Tensor, target: torch.Tensor, features: PerceptualFeatures
) -> tuple[torch.Tensor, dict[str, float]]:
    """Pixel MSE + perceptual distance of a render (1, 3, R, R) against the picture at R."""
    pixel = F.mse_loss(image, target)
    perceptual = features.distance(image, target)
    loss = pixel + PERCEPTUAL_WEIGHT * perceptual
    return loss, {"loss": loss.item(), "pixel": pixel.item(), "perceptual": perceptual.item()}


def picture_at(target: torch.Tensor, resolution: int) -> torch.Tensor:
    """The picture (1, 3, H, W) in [-1, 1] at the generator's resolution."""
    if target.shape[-1] == resolution:
        return target
    return F.interpolate(target, size=(resolution, resolution), mode="area")


def best_start(
    generator, candidates: torch.Tensor, target: torch.Tensor, features
) -> tuple[int, list[float]]:
    """Index of the candidate ws (N, num_ws, w_dim) whose frontal render is closest to the picture."""
    device = candidates.device
    c = cameras([FRONT]).to(device, torch.float32)
    scores = []
    with torch.no_grad():
        for ws in candidates:
            image = generator.synthesis(ws[None], c)["image"]
            scores.append(
                reconstruction_loss(image, picture_at(target, image.shape[-1]), features)[1]["loss"]
            )
    return min(range(len(scores)), key=scores.__getitem__), scores


def _ramp(t: float) -> float:
    """The projection's rate schedule at progress t in (0, 1]: a 5 % warm-up, then a cosine
    ramp-down over the last 75 % (the shape of EG3D's and StyleGAN2's projectors)."""
    warm = min(1.0, t / 0.05)
    down = 0.5 + 0.5 * math.cos(math.pi * min(1.0, max(0.0, t - 0.25) / 0.75))
    return warm * max(down, 0.02)


def project(
    generator,
    target: torch.Tensor,
    ws_start: torch.Tensor,
    steps: int,
    features: PerceptualFeatures,
    *,
    w_plus: bool = False,
    fit_camera: bool = False,
    lr: float = 0.02,
    camera_lr: float = 1.0,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[torch.Tensor, float, float, list[dict]]:
    """Optimise w (one code broadcast to every layer, or every layer's own with `w_plus`), and
    with `fit_camera` the yaw/pitch (initialised frontal), so that the render matches `target`.
    Returns (ws, yaw, pitch, per-step losses); the generator's weights are not touched."""
    num_ws = ws_start.shape[1]
    start = ws_start.detach().clone()
    code = torch.nn.Parameter(start if w_plus else start[:, :1].clone())
    yaw = torch.nn.Parameter(torch.tensor(FRONT))
    pitch = torch.nn.Parameter(torch.tensor(0.0))
    groups = [{"params": [code], "lr": lr}]
    if fit_camera:
        groups.append({"params": [yaw, pitch], "lr": camera_lr})
    optimiser = torch.optim.Adam(groups, betas=(0.9, 0.999))
    camera_config = CameraConfig()
    generator.requires_grad_(False)
    losses = []
    try:
        for step in range(1, steps + 1):
            scale = _ramp(step / steps)
            for group, base in zip(optimiser.param_groups, (lr, camera_lr), strict=False):
                group["lr"] = base * scale
            ws = code if w_plus else code.expand(-1, num_ws, -1)
            c = camera_from_angles_torch(yaw, pitch, camera_config).to(ws.device)
            image = generator.synthesis(ws, c)["image"]
            loss, terms = reconstruction_loss(image, picture_at(target, image.shape[-1]), features)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():  # the camera stays in the range the generator was trained on
                yaw.clamp_(-90.0, 90.0)
                pitch.clamp_(-30.0, 30.0)
            record = {"phase": "refine", "step": step, **terms, "yaw": yaw.item(), "pitch": pitch.item()}
            losses.append(record)
            if progress:
                progress(step, record)
    finally:
        generator.requires_grad_(True)
    ws = (code if w_plus else code.expand(-1, num_ws, -1)).detach().clone()
    return ws, yaw.item(), pitch.item(), losses


def pivotal_tune(
    generator,
    target: torch.Tensor,
    ws: torch.Tensor,
    yaw: float,
    pitch: float,
    steps: int,
    features: PerceptualFeatures,
    *,
    lr: float = 3e-4,
    seed: int = 0,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """PTI: a copy of the generator fine-tuned so that the pivot `ws` renders `target`, with the
    locality regulariser: at codes between the pivot and random codes, seen from random yaws,
    the tuned copy must render what the source generator renders (L2 + perceptual). Returns
    (the tuned copy in eval mode, per-step losses); the source generator is not changed."""
    from avatar_platform.pipelines.rendering import ws_for

    source, ws = generator, ws.detach()
    tuned = copy.deepcopy(generator).train()
    tuned.requires_grad_(True)
    tuned.mapping.requires_grad_(False)  # the pivot is a w: only what renders it is tuned
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    device = ws.device
    c = cameras([yaw], pitch).to(device, torch.float32)
    rng = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(1, steps + 1):
        image = tuned.synthesis(ws, c)["image"]
        loss, terms = reconstruction_loss(image, picture_at(target, image.shape[-1]), features)
        if LOCALITY_WEIGHT:
            z = torch.randn(1, source.config.z_dim, generator=rng)
            with torch.no_grad():
                w_random = ws_for(source, z, 1.0)
                w_local = torch.lerp(ws, w_random, LOCALITY_SHARE)
                view_yaw = float(torch.empty(1).uniform_(-180.0, 180.0, generator=rng))
                c_local = cameras([view_yaw]).to(device, torch.float32)
                reference = source.synthesis(w_local, c_local)["image"]
            local = tuned.synthesis(w_local, c_local)["image"]
            locality = F.mse_loss(local, reference) + features.distance(local, reference)
            loss = loss + LOCALITY_WEIGHT * locality
            terms["locality"] = locality.item()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        record = {"phase": "tune", "step": step, **terms}
        losses.append(record)
        if progress:
            progress(step, record)
    return tuned.eval().requires_grad_(False), losses


def refine(
    generator,
    target: torch.Tensor,
    candidates: torch.Tensor | None,
    refine_steps: int,
    tune_steps: int = 0,
    *,
    w_plus: bool = False,
    fit_camera: bool = False,
    progress: Callable[[int, dict], None] | None = None,
) -> RefineResult:
    """The whole path: the best of the diffusion's `candidates` (or the mean w when there are
    none: a bare GAN) → projection (`refine_steps`) → pivotal tuning (`tune_steps`)."""
    check_steps(refine_steps, tune_steps)
    features = PerceptualFeatures().to(target.device)
    if candidates is None or len(candidates) == 0:
        w_avg = generator.mapping.w_avg.detach()
        ws_start = w_avg.reshape(1, 1, -1).expand(1, generator.mapping.num_ws, -1).clone()
        start = "mean w (the model has no style diffusion)"
        start_losses: list[float] = []
    else:
        best, start_losses = best_start(generator, candidates, target, features)
        ws_start = candidates[best : best + 1]
        start = f"style diffusion, candidate {best} of {len(candidates)} (lowest reconstruction loss)"
    ws, yaw, pitch, losses = ws_start.detach(), FRONT, 0.0, []
    if refine_steps:
        ws, yaw, pitch, losses = project(
            generator,
            target,
            ws_start,
            refine_steps,
            features,
            w_plus=w_plus,
            fit_camera=fit_camera,
            progress=progress,
        )
    result = RefineResult(ws, yaw, pitch, generator, losses, features.name, start, ws_start=ws_start.detach())
    result.losses.insert(0, {"phase": "start", "step": 0, "candidate_losses": start_losses})
    if tune_steps:
        tuned, tune_losses = pivotal_tune(
            generator, target, ws, yaw, pitch, tune_steps, features, progress=progress
        )
        result.generator, result.tuned = tuned, True
        result.losses += tune_losses
    return result


def picture_sha256(image) -> str:
    """sha256 of the picture's RGB pixels and size (what the card names as the input)."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    digest = hashlib.sha256(f"{pixels.shape}".encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def save_refined(result: RefineResult, folder: Path, *, source: str, picture_hash: str) -> Path:
    """A GAN model folder of the refined avatar: the generator that renders it (tuned or not) as
    generator_ema, its pivot ws, and a card (`avatar.json`) naming the input's hash, the source
    model, the camera and the steps. Written beside and renamed into place: whole or not at all."""
    from safetensors.torch import save_file

    from avatar_platform.formats.model_folder import replace_folder, write_metrics

    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result.generator.save_pretrained(staging, "generator_ema")
    save_file({"ws": result.ws.detach().cpu().contiguous()}, str(staging / PIVOT_FILE))
    kinds = [r for r in result.losses if r["phase"] in ("refine", "tune")]
    card = {
        "kind": "styleavatar3d-refined-avatar",
        "source_model": source,
        "input_sha256": picture_hash,
        "start": result.start,
        "camera": {"yaw": result.yaw, "pitch": result.pitch},
        "refine_steps": sum(r["phase"] == "refine" for r in kinds),
        "tune_steps": sum(r["phase"] == "tune" for r in kinds),
        "tuned": result.tuned,
        "perceptual_features": result.features,
        "final_loss": kinds[-1]["loss"] if kinds else None,
    }
    (staging / AVATAR_CARD).write_text(json.dumps(card, indent=2) + "\n")
    config = {"kind": "styleavatar3d-gan", "refined_avatar": True, "parent": source}
    (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_metrics(staging, {"reconstruction_loss": card["final_loss"]} if kinds else {}, keep_existing=False)
    replace_folder(staging, folder)
    return folder


def load_pivot(folder: Path) -> torch.Tensor | None:
    """The pivot ws of a refined-avatar model folder, or None for any other model."""
    path = Path(folder) / PIVOT_FILE
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(str(path))["ws"]


def before_after(source, result: RefineResult, target: torch.Tensor, views: int):
    """(2·R, (1 + views)·R, 3) uint8: the input, then the avatar at `views` yaws (front first);
    top row where the refinement started (the source generator), bottom row the result."""
    import numpy as np

    from avatar_platform.pipelines.inference.sampling import view_row
    from avatar_platform.pipelines.rendering import to_uint8

    picture = to_uint8(picture_at(target, source.config.img_resolution))[0]
    rows = [
        np.concatenate([picture, view_row(source, result.ws_start, views)], axis=1),
        np.concatenate([picture, view_row(result.generator, result.ws, views)], axis=1),
    ]
    return np.concatenate(rows, axis=0)


def loss_plot(losses: list[dict], size: tuple[int, int] = (480, 240)):
    """(H, W, 3) uint8: the loss per step (refine, then tune, in one line; a mark where the
    tuning starts), on a log scale, with the first and last values written."""
    import numpy as np
    from PIL import Image, ImageDraw

    steps = [r for r in losses if r["phase"] in ("refine", "tune")]
    width, height = size
    page = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(page)
    if not steps:
        draw.text((10, 10), "no steps", fill=(0, 0, 0))
        return np.asarray(page)
    values = np.log10(np.maximum([r["loss"] for r in steps], 1e-8))
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-6)
    left, right, top, bottom = 40, width - 10, 24, height - 20
    xs = left + (right - left) * np.arange(len(values)) / max(len(values) - 1, 1)
    ys = bottom - (bottom - top) * (values - low) / span
    draw.rectangle((left, top, right, bottom), outline=(200, 200, 200))
    tune_at = next((i for i, r in enumerate(steps) if r["phase"] == "tune"), None)
    if tune_at is not None:
        draw.line((xs[tune_at], top, xs[tune_at], bottom), fill=(230, 160, 60))
        draw.text((xs[tune_at] + 3, top + 2), "tune", fill=(200, 120, 20))
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(30, 90, 200), width=2)
    draw.text(
        (left, 4), f"loss (log scale): {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}", fill=(0, 0, 0)
    )
    draw.text((left, bottom + 4), f"step 1 … {len(steps)}", fill=(90, 90, 90))
    return np.asarray(page)
