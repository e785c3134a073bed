"""Masks refined by an image-segmentation (matting) model, for the `controlnet` backend.

The model is any transformers semantic-segmentation model (Segformer, DPT, BEiT, MobileViT,
UperNet, …) named by a hub id or a local folder and loaded like every other model (offline-aware,
core/hub.py). Its foreground probability is intersected with the dilated condition silhouette:
the model trims what Stable Diffusion left as background inside the silhouette band, and the
silhouette keeps a segmentation error elsewhere in the picture out of the mask.

Which output is "the avatar": a one-label model's sigmoid; else the label named like a person
or foreground (FOREGROUND_LABELS); else, for two labels, label 1 (background, foreground).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.hub import load_pretrained, model_source, offline
from avatar_platform.pipelines.datagen.backend import mask_from_bool

FOREGROUND_LABELS = ("foreground", "person", "human", "people", "body", "portrait", "character")
FOREGROUND_THRESHOLD = 0.5
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
EXPECTED = (
    "a transformers semantic-segmentation model (config.json, weights and "
    "preprocessor_config.json: Segformer, DPT, BEiT, MobileViT, UperNet, …) as a folder or hub id"
)


def _refuse(source: str, why: str) -> AvatarPlatformError:
    return AvatarPlatformError(
        f"the matting model '{source}' cannot be used: {why}",
        expected=EXPECTED,
        fix="pass such a model (e.g. a Segformer fine-tuned on person/foreground segmentation), "
        "or drop --matting-model to keep the condition silhouette",
    )


def foreground_output(config) -> tuple[str, int]:
    """("sigmoid" | "softmax", channel) of the model output that is the avatar's foreground."""
    num_labels = int(getattr(config, "num_labels", 0) or 0)
    if num_labels == 1:
        return "sigmoid", 0
    labels = {int(k): str(v).lower() for k, v in (getattr(config, "id2label", None) or {}).items()}
    for index, name in sorted(labels.items()):
        if any(word in name for word in FOREGROUND_LABELS) and index < num_labels:
            return "softmax", index
    if num_labels == 2:
        return "softmax", 1
    raise ValueError(
        f"none of its {num_labels} labels is a foreground/person label ({', '.join(list(labels.values())[:6])}…)"
    )


def check_matting_model(source: str) -> str:
    """The resolved source (absolute folder or hub id) of a usable matting model; otherwise one
    clear error. Reads its config (and, for a folder, looks for weights), loads no weights."""
    from transformers import AutoConfig, AutoImageProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

    resolved = model_source(source, "matting model")
    path = Path(resolved)
    if path.exists() and not path.is_dir():
        raise _refuse(source, "it is a file, not a model folder")
    if path.is_dir() and not (path / "config.json").is_file():
        raise _refuse(source, "the folder holds no config.json")
    if path.is_dir():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            raise _refuse(source, "its config.json is not a JSON object") from None
        if not model_type:
            raise _refuse(
                source,
                "its config.json names no transformers model_type (a diffusers model, or another library's?)",
            )
    local = offline() or None
    try:
        config = AutoConfig.from_pretrained(resolved, local_files_only=local)
    except (OSError, ValueError, KeyError) as err:
        raise _refuse(source, f"its config cannot be read ({str(err).splitlines()[0][:160]})") from None
    if config.model_type not in MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES:
        raise _refuse(source, f"'{config.model_type}' is not a semantic-segmentation model")
    try:
        foreground_output(config)
    except ValueError as err:
        raise _refuse(source, str(err)) from None
    if path.is_dir() and not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise _refuse(source, "the folder holds no weights")
    try:
        AutoImageProcessor.from_pretrained(resolved, local_files_only=local)
    except (OSError, ValueError, KeyError) as err:
        raise _refuse(source, f"it has no image processor ({str(err).splitlines()[0][:160]})") from None
    return resolved


class MattingRefiner:
    """Loads the model once (inside an image actor) and refines masks of generated images."""

    def __init__(self, source: str, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        self.source = check_matting_model(source)
        self.device = device
        self.processor = load_pretrained(
            AutoImageProcessor.from_pretrained, self.source, "matting model's image processor"
        )
        model = load_pretrained(
            AutoModelForSemanticSegmentation.from_pretrained, self.source, "matting model"
        )
        self.model = model.to(device=device, dtype=torch.float32).eval()
        self.kind, self.channel = foreground_output(model.config)

    def foreground_probability(self, images: list[np.ndarray]) -> np.ndarray:
        """(B, R, R) float32: the model's probability that each pixel is the avatar."""
        import torch
        import torch.nn.functional as F

        size = images[0].shape[:2]
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, torch.float32)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits.float()
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            if self.kind == "sigmoid":
                prob = torch.sigmoid(logits[:, self.channel])
            else:
                prob = torch.softmax(logits, dim=1)[:, self.channel]
        return prob.cpu().numpy().astype(np.float32)

    def refine(self, images: list[np.ndarray], silhouettes: list[np.ndarray]) -> list[np.ndarray]:
        """(R, R) uint8 masks: the model's foreground (p ≥ 0.5) inside the dilated silhouette."""
        if not images:
            return []
        prob = self.foreground_probability(images)
        return [
            mask_from_bool((p >= FOREGROUND_THRESHOLD) & (np.asarray(s) > 0))
            for p, s in zip(prob, silhouettes, strict=True)
        ]
