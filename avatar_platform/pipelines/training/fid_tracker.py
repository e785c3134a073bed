"""FID/KID during training: rank 0 keeps the first real images it trains on and compares them
with G_ema's renders at the same cameras (random-CNN features unless Inception weights exist)."""

from __future__ import annotations

import torch

from avatar_platform.pipelines.evaluation.fid import (
    frechet_distance,
    generated_features,
    kernel_inception_distance,
    random_feature_extractor,
    real_features,
)


class FidTracker:
    """Collects `samples` real images and cameras, then scores a generator against them."""

    def __init__(self, samples: int):
        self.samples = samples
        self.images: list[torch.Tensor] = []
        self.cameras: list[torch.Tensor] = []
        self.extract = random_feature_extractor()

    @property
    def ready(self) -> bool:
        return self.samples > 0 and sum(len(x) for x in self.images) >= self.samples

    def collect(self, batch: dict) -> None:
        if self.samples > 0 and not self.ready:
            image = batch["image"].cpu()
            image = image.float() / 127.5 - 1.0 if image.dtype == torch.uint8 else image.float()
            self.images.append(image)
            self.cameras.append(batch["camera"].cpu().float())

    def score(self, generator) -> dict[str, float]:
        """{'fid': …, 'kid': …} of `generator` at the collected cameras."""
        real_images = torch.cat(self.images)[: self.samples]
        cameras = torch.cat(self.cameras)[: self.samples]
        real = real_features(real_images, self.extract)
        fake = generated_features(generator, cameras, self.extract)
        subset = max(min(len(real) // 2, 100), 2)
        return {
            "fid": frechet_distance(real, fake),
            "kid": kernel_inception_distance(real, fake, subset_size=subset),
        }
