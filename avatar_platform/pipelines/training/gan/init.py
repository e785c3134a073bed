"""`train gan --init`: start G, G_ema and D from a trained GAN (transfer / fine-tuning), with a
fresh optimiser and schedule — what EG3D's `--resume` of a pickle is used for, without pickles.

The driver checks the parent once (`check_init`: a GAN model folder whose networks have the
preset's architecture, weights that load); each worker then copies its weights (`load_init`).
"""

from __future__ import annotations

import json
from pathlib import Path

from avatar_platform import starters
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import GAN_NETWORKS
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

# what a label-conditioned D may change without changing its weights' shapes
D_NON_ARCHITECTURE = {"conditioning"}


def check_init(spec: str | Path, config: GanTrainingConfig) -> Path:
    """The parent's GAN model folder, or one clear error: not a model, a style diffusion model,
    a folder without all three networks, another architecture (naming the fields), damaged
    weights."""
    from avatar_platform.formats.model_folder import (
        MLFLOW_SCHEMES,
        is_diffusion_folder,
        resolve_package_folder,
    )

    if str(spec).startswith((*MLFLOW_SCHEMES, starters.SCHEME)) or Path(str(spec)).exists():
        folder = resolve_package_folder(spec)
    else:
        raise AvatarPlatformError(
            f"--init '{spec}' does not exist",
            expected="a GAN model folder, a `train gan` output folder, an MLflow URI or a "
            "shipped starter (starter:demo)",
            fix="check the path",
        )
    if is_diffusion_folder(folder):
        raise AvatarPlatformError(
            f"--init '{spec}' is a style diffusion model, not a GAN",
            expected="the output of `avatar-platform train gan`",
            fix=f"pass its generator's training output (the diffusion embeds only G_ema: "
            f"'{folder / 'generator'}' has no discriminator to fine-tune)",
        )
    missing = [f"{name}.json" for _, name in GAN_NETWORKS if not (folder / f"{name}.json").is_file()]
    if missing:
        raise AvatarPlatformError(
            f"--init '{folder}' lacks {', '.join(missing)}",
            expected="a GAN model folder with generator, generator_ema and discriminator",
            fix="pass the model/ folder (or the --out) of `avatar-platform train gan`",
        )
    differences = architecture_differences(folder, config)
    if differences:
        raise AvatarPlatformError(
            f"--init '{folder}' has another architecture than this run: {'; '.join(differences)}",
            expected="a parent trained with the same preset's network sizes (and the same mask channel: gan.masks)",
            fix="train with the parent's preset, or set these fields to the parent's values",
        )
    _check_weights(folder)
    return folder


def architecture_differences(folder: Path, config: GanTrainingConfig) -> list[str]:
    """'section.field: parent X, this run Y' for every field that changes the networks."""
    out = []
    ours = {
        "generator": config.generator.model_dump(mode="json"),
        "discriminator": config.discriminator.model_dump(mode="json"),
    }
    saved = {
        section: json.loads((folder / f"{name}.json").read_text()).get("config", {})
        for section, name in (("generator", "generator_ema"), ("discriminator", "discriminator"))
    }
    for section, values in ours.items():
        # fields a parent written before them lacks take their defaults, as when it loads
        parent = {**_defaults(section), **saved[section]}
        for key, value in sorted(values.items()):
            if key in D_NON_ARCHITECTURE and section == "discriminator":
                continue
            if parent.get(key) != value:
                out.append(f"{section}.{key}: parent {parent.get(key)!r}, this run {value!r}")
    label, parent_label = (config.discriminator.conditioning.label_dim, _label_dim(saved["discriminator"]))
    if parent_label != label:
        out.append(
            f"discriminator label size: parent {parent_label}, this run {label} (--discriminator mode)"
        )
    return out


def _defaults(section: str) -> dict:
    from avatar_platform.models.discriminator import DiscriminatorConfig
    from avatar_platform.models.eg3d.generator import GeneratorConfig

    cls = GeneratorConfig if section == "generator" else DiscriminatorConfig
    return cls().model_dump(mode="json")


def _label_dim(discriminator_config: dict) -> int:
    from avatar_platform.models.discriminator import DiscriminatorConfig

    return DiscriminatorConfig.model_validate(discriminator_config).conditioning.label_dim


def _check_weights(folder: Path) -> None:
    from avatar_platform.models.discriminator import DualDiscriminator
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator

    for attr, name in GAN_NETWORKS:
        cls = DualDiscriminator if attr == "D" else TriPlaneGenerator
        try:
            cls.from_pretrained(folder, name)
        except AvatarPlatformError:
            raise
        except Exception as err:  # safetensors and torch raise their own types
            raise AvatarPlatformError(
                f"--init '{folder}': {name}.safetensors does not load ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]})",
                fix="restore the file or train the parent again",
            ) from None


def load_init(trainer, folder: Path, parent: str | None = None) -> None:
    """Copy the parent's G, G_ema and D weights into `trainer`; optimiser, step and schedule stay
    fresh, at `finetune_lr_scale` × the learning rates (the preset's rates shake a trained
    parent's colours first: BENCHMARKS.md, the starter's fine-tune). Records the parent
    (`trainer.parent`: `parent` as the user named it, else the folder), which `GanTrainer.save`
    writes to config.json."""
    folder = Path(folder)
    for attr, name in GAN_NETWORKS:
        module = getattr(trainer, attr)
        loaded = type(module).from_pretrained(folder, name).to(trainer.device)
        module.load_state_dict(loaded.state_dict())
    scale = trainer.config.finetune_lr_scale
    for optimiser, lr in ((trainer.opt_g, trainer.config.lr_g), (trainer.opt_d, trainer.config.lr_d)):
        for group in optimiser.param_groups:
            group["lr"] = lr * scale
    trainer.parent = parent or str(folder)
