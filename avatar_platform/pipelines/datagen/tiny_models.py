"""Tiny random-weight Stable Diffusion + ControlNet components (and the other models the
platform loads through transformers), saved like real ones.

Tests and benchmarks build these in-process (no weights can be downloaded here) and load them back
through the very code path that real weights take (`ControlNetBackend`). Their images are noise:
they exercise the machinery, not the quality.
"""

from __future__ import annotations

import json
import string
from pathlib import Path


def _tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + ",.'-!?&"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = ["t h", "th e</w>", "a n", "i n", "o n</w>"]
    for merge in merges:  # every merge result must be in the vocabulary
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    # transformers 5 takes the vocabulary and merges themselves (vocab_file= is ignored)
    pairs = [tuple(merge.split(" ")) for merge in merges]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer, len(vocab)


TINY = {
    "unet": dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    ),
    "vae": dict(
        block_out_channels=(8, 16),
        norm_num_groups=4,
        sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    ),
    "text": dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2),
    # the conditioning embedding must downsample like the VAE (×2 for two blocks)
    "controlnet": dict(conditioning_embedding_out_channels=(8, 16)),
}

# Stable Diffusion 1.5's shapes (860M-parameter UNet, CLIP ViT-L/14 text tower, the 4-level VAE):
# random weights with the real cost per image, for GPU speed measurements without the weights
SD15 = {
    "unet": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        sample_size=64,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "vae": dict(
        block_out_channels=(128, 256, 512, 512),
        norm_num_groups=32,
        sample_size=512,
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
    "text": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
    "controlnet": dict(conditioning_embedding_out_channels=(16, 32, 96, 256)),
}


def build_tiny_stable_diffusion(folder: str | Path, seed: int = 0) -> dict[str, str]:
    """Write a tiny SD 1.5-shaped pipeline and two ControlNets (OpenPose, depth) under `folder`.

    Returns the local paths: `{"sd_model", "openpose_controlnet", "depth_controlnet"}`.
    """
    return build_random_stable_diffusion(folder, TINY, "tiny", seed)


def build_random_stable_diffusion(
    folder: str | Path, shapes: dict, suffix: str, seed: int = 0, dtype=None, controlnets: bool = True
) -> dict[str, str]:
    """Write a random-weight SD pipeline of `shapes` (TINY or SD15) and two ControlNets (unless
    `controlnets` is False: a LoRA benchmark needs the pipeline alone)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **shapes["unet"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **shapes["vae"])
    tokenizer_dir = folder / "tokenizer-build"
    tokenizer, vocab_size = _tiny_tokenizer(tokenizer_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **shapes["text"],
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype is not None:
        pipe = pipe.to(dtype=dtype)
    paths = {"sd_model": folder / f"sd-{suffix}"}
    pipe.save_pretrained(paths["sd_model"])
    for name in ("openpose", "depth") if controlnets else ():
        controlnet = ControlNetModel.from_unet(unet, **shapes["controlnet"])
        with torch.no_grad():  # a ControlNet from a UNet starts with zero convs: perturb them
            for param in controlnet.parameters():
                param.add_(torch.randn_like(param) * 0.02)
        if dtype is not None:
            controlnet = controlnet.to(dtype=dtype)
        paths[f"{name}_controlnet"] = folder / f"controlnet-{name}-{suffix}"
        controlnet.save_pretrained(paths[f"{name}_controlnet"])
    (folder / f"{suffix}-models.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return {k: str(v) for k, v in paths.items()}


def write_tiny_pictures(folder: str | Path, count: int = 4, seed: int = 0) -> Path:
    """`count` small PNG pictures of a made-up character (a coloured disc on a plain ground, of
    varied sizes and aspect ratios) in `folder`, for `train lora` tests and benchmarks."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        width, height = 40 + 8 * (i % 3), 48 + 4 * i
        picture = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
        x, y = rng.integers(4, 16, 2)
        ImageDraw.Draw(picture).ellipse((x, y, x + 24, y + 24), fill=(230, 120, 30))
        picture.save(folder / f"picture-{i:02d}.png")
    return folder


def build_tiny_matting_model(folder: str | Path, seed: int = 0, size: int = 32) -> str:
    """Write a tiny random-weight Segformer semantic-segmentation model (labels background,
    foreground) and its image processor to `folder`: a stand-in for a real matting model that
    `--matting-model` loads through transformers like the real one. Returns the folder."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        sr_ratios=[2, 1],
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=2,
        id2label={0: "background", 1: "foreground"},
        label2id={"background": 0, "foreground": 1},
    )
    model = SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():  # initial logits are ~0 (p ≈ 0.5 everywhere): make decisions clear-cut
        model.decode_head.classifier.weight.mul_(5000.0)
    model.save_pretrained(folder)
    processor = SegformerImageProcessor(size={"height": size, "width": size})
    processor.save_pretrained(folder)
    return str(folder)


def build_random_clip_vision(
    folder: str | Path,
    *,
    width: int = 16,
    layers: int = 1,
    heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    embed_dim: int = 12,
    seed: int = 0,
) -> str:
    """Write a random-weight CLIP vision tower with its projection (what the style diffusion's
    `clip` image encoder loads) to `folder`: tiny by default; OpenCLIP's names for the sizes (an
    MLP 4× the width). Returns the folder."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=embed_dim,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return str(folder)
