"""FID and KID between generated images (at dataset cameras) and dataset images.

Features come from an injectable extractor: InceptionV3 (torchvision's ImageNet weights, read from
a local file — nothing is downloaded) for numbers comparable in spirit to the paper's, or a fixed
random-weight CNN that needs no weights (offline runs and tests; its values only compare runs
with each other). Put the Inception weights at `$AVATAR_HOME/weights/inception_v3_google.pth`
(torchvision's `inception_v3_google-0cc3c7bd.pth`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import platform_home

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) in [-1, 1] → (B, D)
INCEPTION_FILE = "inception_v3_google.pth"


def random_feature_extractor(dim: int = 128, seed: int = 0) -> FeatureExtractor:
    """A fixed random CNN (same weights everywhere for a seed): offline, weight-free features."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(32, 3, 3, 3, generator=gen) / 3.0
    w2 = torch.randn(64, 32, 3, 3, generator=gen) / 9.0
    w3 = torch.randn(dim, 64, 3, 3, generator=gen) / 12.0

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(64, 64), mode="bilinear", align_corners=False)
        x = F.avg_pool2d(F.leaky_relu(F.conv2d(x, w1, padding=1), 0.2), 2)
        x = F.avg_pool2d(F.leaky_relu(F.conv2d(x, w2, padding=1), 0.2), 2)
        x = F.leaky_relu(F.conv2d(x, w3, padding=1), 0.2)
        return x.mean(dim=(2, 3))

    return extract


def inception_feature_extractor(weights: Path | None = None) -> FeatureExtractor:
    """InceptionV3 pool features (2048-d) from a local torchvision weights file."""
    from torchvision.models import inception_v3

    weights = Path(weights) if weights else platform_home() / "weights" / INCEPTION_FILE
    if not weights.is_file():
        raise AvatarPlatformError(
            f"InceptionV3 weights not found at '{weights}'",
            expected="torchvision's inception_v3_google-0cc3c7bd.pth",
            fix=f"copy it to {weights}, or use --fid-features random (offline, relative numbers)",
        )
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate((images.float() + 1) / 2, size=(299, 299), mode="bilinear")
        return model((x - mean) / std)

    return extract


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (N, D)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 100, seed: int = 0
) -> float:
    """KID: unbiased MMD² with the cubic polynomial kernel, averaged over subsets."""
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(a), len(b))
    dim = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (size * (size - 1))
        values.append(mmd - 2 * kxy.mean())
    return float(np.mean(values))


@torch.no_grad()
def generated_features(
    generator,
    cameras: torch.Tensor,
    extractor: FeatureExtractor,
    seed: int = 0,
    batch: int = 16,
    truncation_psi: float = 1.0,
) -> np.ndarray:
    """Features of generated images, one per camera (B, 25), random z per image."""
    out = []
    for result in generated_batches(generator, cameras, seed, batch, truncation_psi):
        out.append(extractor(result["image"].clamp(-1, 1).cpu()).numpy())
    return np.concatenate(out)


@torch.no_grad()
def generated_batches(
    generator, cameras: torch.Tensor, seed: int = 0, batch: int = 16, truncation_psi: float = 1.0
):
    """G's outputs at `cameras` (B, 25), `batch` at a time, one random z per camera drawn from
    `seed`: the pictures every generated-side metric judges (FID/KID here, the colour scores, rim).
    Each z's identity is `rendering.ws_for`'s, the one that `sample`, `serve` and the meshes show,
    not the mapping conditioned on the rendering camera (EG3D's FID): a generator that ties what
    it paints to the conditioning camera scored well there while its samples did not."""
    from avatar_platform.pipelines.rendering import ws_for

    device = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(cameras), batch):
        c = cameras[i : i + batch].to(device, torch.float32)
        z = torch.randn(len(c), generator.config.z_dim, generator=gen)
        yield generator.synthesis(ws_for(generator, z, truncation_psi), c)


def real_features(images: torch.Tensor, extractor: FeatureExtractor, batch: int = 64) -> np.ndarray:
    return np.concatenate([extractor(images[i : i + batch]).numpy() for i in range(0, len(images), batch)])
