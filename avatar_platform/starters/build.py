"""Make a starter from a trained GAN: copy its model folder (no pickles), hash every file, write
`card.json` and `MODEL_CARD.md`. The shipped `starter:demo` was made by this, as its card says:

    python -m avatar_platform.starters.build --name demo --model OUT --dataset DATA \\
        --metrics models.jsonl --wall-time-s S --command "…" --command "…"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
from pathlib import Path

from avatar_platform import __version__, starters
from avatar_platform.core.digest import file_sha256
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import GAN_NETWORKS, is_pickle, replace_folder

MAX_BYTES = 25 * 2**20  # a starter travels in the repository and in every installation
METRIC_KEYS = (
    "fid",
    "kid",
    "geometry",
    "silhouette_iou",
    "largest_share",
    "border_faces",
    "view_accuracy",
    "view_accuracy_front",
    "rim",
)


def build_starter(
    name: str, model: Path, card: dict, root: Path | None = None, views: Path | None = None
) -> Path:
    """`root/<name>/` (default: the package's starters folder) with `model/` copied from the GAN
    model folder `model`, without pickles, and the card (`card` + the file hashes). Written
    beside the old one and swapped in whole: an interrupted build leaves the old starter."""
    root = Path(root or starters.STARTERS_DIR)
    missing = [
        f"{n}.{ext}"
        for _, n in GAN_NETWORKS
        for ext in ("json", "safetensors")
        if not (Path(model) / f"{n}.{ext}").is_file()
    ]
    if missing:
        raise AvatarPlatformError(
            f"'{model}' lacks {', '.join(missing)}",
            expected="a GAN model folder written by `avatar-platform train gan` (G, G_ema and D)",
        )
    files = sorted(
        p
        for p in Path(model).iterdir()
        if p.is_file() and not is_pickle(p.name) and not p.name.startswith(".")
    )
    size = sum(p.stat().st_size for p in files)
    if size > MAX_BYTES:
        raise AvatarPlatformError(
            f"the starter would hold {size / 2**20:.1f} MiB",
            expected=f"at most {MAX_BYTES / 2**20:.0f} MiB",
            fix="train a smaller preset",
        )
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "model").mkdir(parents=True)
    for file in files:
        shutil.copy2(file, staging / "model" / file.name)
    if views is not None:
        shutil.copy2(views, staging / "views.png")
    full = {
        "format_version": starters.CARD_FORMAT_VERSION,
        "name": name,
        **card,
        "model_bytes": size,
        "files": {p.name: file_sha256(staging / "model" / p.name) for p in files},
    }
    (staging / "card.json").write_text(json.dumps(full, indent=2) + "\n")
    (staging / "MODEL_CARD.md").write_text(render_markdown(full))
    target = root / name
    replace_folder(staging, target)
    return target


def render_markdown(card: dict) -> str:
    """The card for people: what it is, how to use it, how it was made, what it scores."""
    name = card["name"]
    lines = [
        f"# Starter model `starter:{name}`",
        "",
        card.get("description", ""),
        "",
        "## Use it",
        "",
        "```",
        *card.get("usage", []),
        "```",
        "",
        "## How it was made",
        "",
        "```",
        *card.get("commands", []),
        "```",
        "",
    ]
    training, dataset = card.get("training", {}), card.get("dataset", {})
    facts = {
        "dataset": f"{dataset.get('num_images')} images, {dataset.get('backend')}, "
        f"config hash `{dataset.get('config_hash')}`",
        "steps": f"{training.get('steps')} ({training.get('kimg')} kimg, batch {training.get('batch_size')})",
        **({"parent": training["parent"]} if training.get("parent") else {}),
        **(
            {"kimg with the parent's": training["kimg_with_parent"]}
            if training.get("kimg_with_parent")
            else {}
        ),
        "hardware": training.get("hardware"),
        "wall time": f"{training.get('wall_time_s', 0) / 60:.0f} min",
        "made": f"{card.get('created')} with avatar-platform {card.get('avatar_platform_version')}",
        "files": f"{len(card['files'])} files, {card.get('model_bytes', 0) / 2**20:.1f} MiB, "
        "sha256 in card.json (checked on every load)",
    }
    lines += [f"- **{key}**: {value}" for key, value in facts.items()]
    metrics = card.get("metrics", {})
    if metrics:
        names = list(metrics)
        lines += [
            "",
            "## What it scores",
            "",
            card.get("metrics_note", ""),
            "",
            "| metric | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for key in METRIC_KEYS:  # a model measured before a metric existed shows "—" there
            if any(key in metrics[n] for n in names):
                lines.append(f"| {key} | " + " | ".join(_fmt(metrics[n].get(key, "—")) for n in names) + " |")
    for extra in card.get("notes", []):
        lines += ["", extra]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--model", type=Path, required=True, help="a `train gan` --out")
    parser.add_argument("--dataset", type=Path, required=True, help="the dataset it trained on")
    parser.add_argument("--metrics", type=Path, help="bench/fidelity.py --models output (jsonl)")
    parser.add_argument("--wall-time-s", type=float, required=True)
    parser.add_argument("--hardware", default=None)
    parser.add_argument("--command", action="append", default=[], help="a reproducing command")
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--description", default="")
    parser.add_argument("--views", type=Path, default=None)
    parser.add_argument("--parent", default=None, help="what the run started from (train gan --init)")
    parser.add_argument("--parent-kimg", type=float, default=0.0, help="the kimg the parent had seen")
    args = parser.parse_args(argv)

    from avatar_platform.formats.model_folder import resolve_model_folder

    folder = resolve_model_folder(args.model)
    config = json.loads((folder / "config.json").read_text())
    dataset = json.loads((args.dataset / "dataset.json").read_text())
    training = config["training"]
    metrics = {}
    if args.metrics:
        for line in args.metrics.read_text().splitlines():
            row = json.loads(line)
            metrics[row["model"]] = {k: row[k] for k in (*METRIC_KEYS, "step", "spec") if k in row}
    kimg = round(config["step"] * training["batch_size"] / 1000, 1)
    card = {
        "description": args.description,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "avatar_platform_version": __version__,
        "preset": config.get("preset", args.name),
        "usage": [
            f"avatar-platform sample --model starter:{args.name} --seeds 0-3 --mesh",
            f"avatar-platform train gan --init starter:{args.name} --data DATASET --steps N",
            f"avatar-platform train diffusion --generator starter:{args.name}",
            f"avatar-platform serve --model starter:{args.name}",
        ],
        "commands": args.command,
        "dataset": {
            "config_hash": dataset["config_hash"],
            "num_images": dataset["num_images"],
            "resolution": dataset["resolution"],
            "backend": dataset["backend"]["backend"],
            "styles": sorted(dataset["counts"]["style"]),
        },
        "training": {
            "steps": config["step"],
            "batch_size": training["batch_size"],
            "kimg": kimg,
            **({"kimg_with_parent": round(kimg + args.parent_kimg, 1)} if args.parent_kimg else {}),
            "wall_time_s": round(args.wall_time_s),
            "hardware": args.hardware or f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
            **({"parent": args.parent} if args.parent else {}),
        },
        "metrics": metrics,
        "metrics_note": "bench/fidelity.py --models (G_ema, ψ = 0.7, seeds 0–3; FID/KID with "
        "random-CNN features: relative numbers; geometry = Chamfer distance to the nearest "
        "template bust, lower is better; silhouette IoU at front/left/back/right, higher is better)",
        "notes": args.note,
    }
    target = build_starter(args.name, folder, card, views=args.views)
    print(f"starter  starter:{args.name} → {target} ({card['training']['steps']} steps)")


if __name__ == "__main__":
    main()
