"""`training_state.pt`: what a `train` checkpoint holds beside its model, so that `--resume`
continues the run where it stopped: the step, the optimisers', scalers' and RNG states. The three
trainers (GAN, style diffusion, LoRA) write and read it through here, with one format version."""

from __future__ import annotations

from pathlib import Path

TRAINING_STATE = "training_state.pt"
FORMAT_VERSION = 1
RESUME_FIX = "continue it with the avatar-platform version that wrote it, or start a new --out"


def save_training_state(folder: Path, state: dict) -> None:
    """`folder/training_state.pt`: `state` (tensors, state dicts, numbers) and the format version."""
    import torch

    torch.save({"format_version": FORMAT_VERSION, **state}, Path(folder) / TRAINING_STATE)


def load_training_state(folder: Path, device, what: str, fix: str = RESUME_FIX) -> dict:
    """The state `save_training_state` wrote, or one clear error when another format wrote it;
    `what` names the run's kind in that error ("GAN", "LoRA", …)."""
    import torch

    from avatar_platform.models.checkpoint import check_format_version

    state = torch.load(Path(folder) / TRAINING_STATE, map_location=device, weights_only=True)
    check_format_version(
        state.get("format_version"), FORMAT_VERSION, f"the {what} training state in '{folder}'", fix=fix
    )
    return state
