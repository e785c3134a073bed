"""Does a picture look like the view its camera says? A small CNN trained on a procedural
dataset's exact labels (issue #15): the coarse view bin (front, left, back, right) and the yaw.

Labels are the yaw the picture was really rendered at (`true_yaw`: a dataset generated with pose
noise keeps the requested camera in `yaw`), so the classifier learns what each view looks like.
It then serves twice:
- `view_accuracy`: renders of a generator at the dataset's cameras: does the back look like a back
  (bin accuracy, mean yaw error) — `avatar-platform eval … --view-classifier`;
- `audit`: a dataset's pictures whose content disagrees with their camera label, per view bin,
  with the worst offenders in a contact sheet — `avatar-platform dataset audit` (the data-quality
  check of the paper's misalignment problem; it works on controlnet datasets too).

A model folder: `view_classifier.json` + `.safetensors` (models.checkpoint) and `card.json` (the
command that made it, the dataset's config hash, held-out accuracy).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.avatar_spec import TRUNCATION
from avatar_platform.models.checkpoint import load_module, save_module
from avatar_platform.pipelines.poses.view_bins import COARSE_VIEW_NAMES, coarse_view_bin

NAME = "view_classifier"
CARD = "card.json"


class ViewClassifierConfig(StrictConfig):
    image_size: int = Field(64, ge=16, description="pictures are resized to this side")
    channels: int = Field(32, ge=4, description="width of the first conv layer (doubles, capped at 4×)")


class ViewClassifier(nn.Module):
    """(B, 3, S, S) in [-1, 1] → (bin logits (B, 4), yaw as (cos, sin) (B, 2))."""

    def __init__(self, config: ViewClassifierConfig):
        super().__init__()
        self.config = config
        widths = [3] + [config.channels * min(2**i, 4) for i in range(4)]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.GroupNorm(4, b), nn.SiLU(), nn.AvgPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.bins = nn.Linear(widths[-1], len(COARSE_VIEW_NAMES))
        self.yaw = nn.Linear(widths[-1], 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="area")
        x = self.features(images).mean(dim=(2, 3))
        return self.bins(x), self.yaw(x)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, chunk: int = 256) -> dict[str, np.ndarray]:
        """bin (N,), yaw in degrees (N,), confidence of the bin (N,) for images in [-1, 1]."""
        self.eval()
        bins, yaws, confidence = [], [], []
        for i in range(0, len(images), chunk):
            logits, direction = self(images[i : i + chunk].float())
            probs = logits.softmax(dim=1)
            bins.append(probs.argmax(dim=1))
            confidence.append(probs.max(dim=1).values)
            yaws.append(torch.rad2deg(torch.atan2(direction[:, 1], direction[:, 0])))
        return {
            "bin": torch.cat(bins).numpy(),
            "yaw": torch.cat(yaws).numpy(),
            "confidence": torch.cat(confidence).numpy(),
        }

    def save_pretrained(self, folder: Path) -> None:
        save_module(self, self.config, Path(folder), NAME)

    @classmethod
    def from_pretrained(cls, folder: Path) -> ViewClassifier:
        return load_module(cls, ViewClassifierConfig, Path(folder), NAME).eval()


def yaw_error(a, b) -> np.ndarray:
    """|a − b| in degrees on the circle (0–180)."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def dataset_rows(data: Path, size: int, limit: int | None = None) -> tuple[dict, dict]:
    """Pictures (N, 3, S, S) in [-1, 1] and their labels (yaw, true_yaw when the dataset has it,
    view_bin, avatar_id, sample_id) of a dataset, and its card."""
    import pyarrow.parquet as pq

    from avatar_platform.formats.dataset_card import read_card
    from avatar_platform.pipelines.training.gan.data import decode_batch

    card = read_card(data)
    images, labels = [], {k: [] for k in ("yaw", "true_yaw", "view_bin", "avatar_id", "sample_id")}
    count = 0
    for shard in card["shards"]:
        table = pq.read_table(Path(data) / shard["file"])
        columns = table.column_names
        decoded = decode_batch(
            {
                "image": table["image"].to_pylist(),
                "yaw": table["yaw"].to_pylist(),
                "pitch": table["pitch"].to_pylist(),
                "camera": table["camera"].to_pylist(),
            },
            size,
        )
        images.append(torch.as_tensor(decoded["image"]).float() / 127.5 - 1.0)
        yaw = table["yaw"].to_numpy()
        labels["yaw"].append(yaw)
        labels["true_yaw"].append(table["true_yaw"].to_numpy() if "true_yaw" in columns else yaw)
        labels["view_bin"].append(table["view_bin"].to_numpy())
        for key in ("avatar_id", "sample_id"):
            labels[key].append(np.asarray(table[key].to_pylist()))
        count += table.num_rows
        if limit is not None and count >= limit:
            break
    rows = {k: np.concatenate(v)[:limit] for k, v in labels.items()}
    rows["image"] = torch.cat(images)[:limit]
    return rows, card


def _targets(true_yaw: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    radians = np.radians(true_yaw)
    bins = torch.as_tensor(coarse_view_bin(true_yaw), dtype=torch.long)
    return bins, torch.as_tensor(np.stack([np.cos(radians), np.sin(radians)], axis=1), dtype=torch.float32)


def train(
    data: Path,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    config: ViewClassifierConfig | None = None,
    held_out: float = 0.1,
    progress: Callable[[int], None] | None = None,
) -> tuple[ViewClassifier, dict]:
    """A classifier trained on `data`'s true views, and its scores on held-out avatars (a share
    `held_out` of the avatars, never trained on). Mirror augmentation: a flipped picture is the
    mirrored yaw."""
    config = config or ViewClassifierConfig()
    rows, card = dataset_rows(data, config.image_size)
    if card["backend"]["backend"] != "procedural":
        raise AvatarPlatformError(
            f"'{data}' is a {card['backend']['backend']} dataset: its pictures' true views are not known",
            expected="a procedural dataset (avatar-platform generate --backend procedural), whose labels are exact",
            fix="train the classifier on a procedural dataset, then audit any dataset with it",
        )
    avatars = np.unique(rows["avatar_id"])
    rng = np.random.default_rng(seed)
    test_avatars = set(rng.choice(avatars, size=max(1, int(len(avatars) * held_out)), replace=False))
    test = np.array([a in test_avatars for a in rows["avatar_id"]])
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    if len(train_idx) < batch_size:
        raise AvatarPlatformError(
            f"'{data}' has {len(train_idx)} training pictures",
            expected=f"at least a batch ({batch_size})",
            fix="generate a larger procedural dataset (--num-images)",
        )
    torch.manual_seed(seed)
    model = ViewClassifier(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, steps + 1):
        pick = train_idx[torch.randint(len(train_idx), (batch_size,), generator=generator).numpy()]
        images, true_yaw = rows["image"][pick], rows["true_yaw"][pick].astype(np.float64)
        flip = torch.rand(batch_size, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        true_yaw = np.where(flip.numpy(), -true_yaw, true_yaw)
        bins, direction = _targets(true_yaw)
        logits, predicted = model(images)
        loss = F.cross_entropy(logits, bins) + F.mse_loss(F.normalize(predicted, dim=1), direction)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress:
            progress(step)
    model.eval()
    found = model.predict(rows["image"][test_idx])
    truth = rows["true_yaw"][test_idx]
    scores = {
        "held_out_pictures": int(len(test_idx)),
        "bin_accuracy": float(np.mean(found["bin"] == coarse_view_bin(truth))),
        "yaw_error_deg": float(np.mean(yaw_error(found["yaw"], truth))),
        "dataset": str(data),
        "dataset_config_hash": card["config_hash"],
        "steps": steps,
    }
    return model, scores


def save(model: ViewClassifier, scores: dict, folder: Path, command: str) -> Path:
    """The model folder, written beside and renamed into place."""
    from avatar_platform.formats.model_folder import replace_folder

    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    card = {"kind": "view-classifier", "command": command, "created": time.strftime("%Y-%m-%d"), **scores}
    (staging / CARD).write_text(json.dumps(card, indent=2) + "\n")
    replace_folder(staging, folder)
    return folder


SHIPPED = Path(__file__).resolve().parent / "view_classifier_model"


def load(path: str | Path | None = None) -> tuple[ViewClassifier, dict]:
    """A classifier folder (default: the one shipped in the package) and its card."""
    folder = Path(path) if path else SHIPPED
    if not (folder / f"{NAME}.json").is_file():
        raise AvatarPlatformError(
            f"'{folder}' holds no view classifier ({NAME}.json)",
            expected="a folder written by `avatar-platform dataset train-view-classifier`",
            fix="pass --view-classifier FOLDER, or train one on a procedural dataset",
        )
    card = json.loads((folder / CARD).read_text()) if (folder / CARD).is_file() else {}
    return ViewClassifier.from_pretrained(folder), card


def view_accuracy(
    generator, classifier: ViewClassifier, yaws: np.ndarray, cameras: torch.Tensor, seed: int = 0
) -> dict:
    """Renders of `generator` (random seeds, ψ = 0.7) at `cameras`: does each look like its
    camera's view? bin accuracy, mean yaw error, and the accuracy per view."""
    from avatar_platform.pipelines.rendering import ws_for

    z = torch.randn(len(cameras), generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    images = []
    with torch.no_grad():
        for i in range(0, len(cameras), 16):
            ws = ws_for(generator, z[i : i + 16], TRUNCATION)
            images.append(generator.synthesis(ws, cameras[i : i + 16].float())["image"].clamp(-1, 1))
    found = classifier.predict(torch.cat(images))
    truth_bins = coarse_view_bin(yaws)
    result = {
        "view_accuracy": float(np.mean(found["bin"] == truth_bins)),
        "view_yaw_error_deg": float(np.mean(yaw_error(found["yaw"], yaws))),
    }
    for index, name in enumerate(COARSE_VIEW_NAMES):
        chosen = truth_bins == index
        if chosen.any():
            result[f"view_accuracy_{name}"] = float(np.mean(found["bin"][chosen] == index))
    return result


def audit(data: Path, classifier: ViewClassifier, worst: int = 24) -> tuple[dict, list[dict], torch.Tensor]:
    """Per labelled view bin: pictures, how many the classifier sees as another view, and the
    mean yaw error; the `worst` offenders (largest yaw error), and their pictures."""
    rows, card = dataset_rows(data, classifier.config.image_size)
    found = classifier.predict(rows["image"])
    label_bins = rows["view_bin"].astype(int)
    errors = yaw_error(found["yaw"], rows["yaw"])
    per_bin = {}
    for index, name in enumerate(COARSE_VIEW_NAMES):
        chosen = label_bins == index
        if chosen.any():
            per_bin[name] = {
                "pictures": int(chosen.sum()),
                "disagree": int(np.sum(found["bin"][chosen] != index)),
                "mean_yaw_error_deg": round(float(errors[chosen].mean()), 2),
            }
    order = np.argsort(-errors)[:worst]
    offenders = [
        {
            "sample_id": str(rows["sample_id"][i]),
            "label": COARSE_VIEW_NAMES[label_bins[i]],
            "label_yaw": round(float(rows["yaw"][i]), 1),
            "seen_as": COARSE_VIEW_NAMES[int(found["bin"][i])],
            "seen_yaw": round(float(found["yaw"][i]), 1),
            "yaw_error_deg": round(float(errors[i]), 1),
        }
        for i in order
    ]
    summary = {
        "dataset": str(data),
        "backend": card["backend"]["backend"],
        "pictures": int(len(label_bins)),
        "disagree": int(sum(b["disagree"] for b in per_bin.values())),
        "per_view": per_bin,
    }
    return summary, offenders, rows["image"][order]


def contact_sheet(images: torch.Tensor, offenders: list[dict], columns: int = 6) -> np.ndarray:
    """The offenders' pictures in a grid, each captioned 'label → seen as (yaw error)'."""
    from PIL import Image, ImageDraw

    from avatar_platform.pipelines.rendering import to_uint8

    side = 96
    rows = max(1, math.ceil(len(offenders) / columns))
    sheet = Image.new("RGB", (columns * side, rows * (side + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (picture, info) in enumerate(zip(to_uint8(images), offenders, strict=True)):
        x, y = (i % columns) * side, (i // columns) * (side + 14)
        sheet.paste(Image.fromarray(picture).resize((side, side)), (x, y))
        caption = f"{info['label']}>{info['seen_as']} {info['yaw_error_deg']:.0f}"
        draw.text((x + 2, y + side + 1), caption, fill="black")
    return np.asarray(sheet)
