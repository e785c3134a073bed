"""Tiny random-weight Stable Diffusion + ControlNet components, saved like real ones.

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


def build_tiny_stable_diffusion(folder: str | Path, seed: int = 0) -> dict[str, str]:
    """Write a tiny SD 1.5-shaped pipeline and two ControlNets (OpenPose, depth) under `folder`.

    Returns the local paths: `{"sd_model", "openpose_controlnet", "depth_controlnet"}`.
    """
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
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    tokenizer_dir = folder / "tokenizer-build"
    tokenizer, vocab_size = _tiny_tokenizer(tokenizer_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
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
    paths = {"sd_model": folder / "sd-tiny"}
    pipe.save_pretrained(paths["sd_model"])
    # the conditioning embedding must downsample like the VAE (×2 for two blocks)
    for name in ("openpose", "depth"):
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
        with torch.no_grad():  # a ControlNet from a UNet starts with zero convs: perturb them
            for param in controlnet.parameters():
                param.add_(torch.randn_like(param) * 0.02)
        paths[f"{name}_controlnet"] = folder / f"controlnet-{name}-tiny"
        controlnet.save_pretrained(paths[f"{name}_controlnet"])
    (folder / "tiny-models.json").write_text(
        json.dumps({k: str(v) for k, v in paths.items()}, indent=2)
    )
    return {k: str(v) for k, v in paths.items()}
