"""Fidelity against ground truth: today's GAN (`baseline`: the volume paints the backdrop, D sees
no mask) against the foreground-aware one (`foreground`: a 2D background network, D judges the
mask, augmented D), trained on the same data for the same steps, evaluated on what the procedural
world knows to be true.

Both arms are trained in this process, one segment after the other (the same batches in the same
order, the same CPU), and each arm is evaluated at every point of `--steps`:
- fid / kid: random-CNN features (relative numbers), G_ema at dataset cameras vs dataset images;
- geometry: Chamfer distance between the mesh of each seed (the product's mesh: the opacity
  level, border band, largest component) and the nearest dataset template bust;
- largest_share: share of faces in the largest component of the raw mesh (marching cubes at the
  same level with no border band, every piece kept, no smoothing);
- border_faces: faces of that raw mesh within 2 voxels of the box border;
- outside_volume: occupied volume outside the nearest template's bounding box (box units³);
- silhouette_iou: G_ema's opacity vs the nearest template's mask, front / left / back / right.

`--variant NAME:key=value,…` adds an arm: the foreground arm with other gan settings (dotted
keys), e.g. `--variant r1-0.1:r1_gamma=0.1 --arms foreground,r1-0.1`. `--init SPEC` starts
every arm from a trained GAN (a fine-tune, as `train gan --init`).

Arms checkpoint after every segment into --out; re-running the same command continues. Prints one
JSON object per (arm, point) and appends it to OUT/results.jsonl. Usage:
    .venv/bin/python bench/fidelity.py --data .avatar/demo/dataset --steps 100,200,300

`--models NAME=SPEC,…` evaluates trained models instead (any `--model` value: a folder, an MLflow
URI, `starter:demo`), with the same metrics, one JSON object each (and OUT/views-NAME.png; all
of them side by side, captioned, in OUT/views.png):
    .venv/bin/python bench/fidelity.py --data .avatar/demo/dataset \
        --models starter=starter:demo,demo=.avatar/demo/gan --out .avatar/bench/models
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ARMS = {
    "baseline": {"background": "none", "mask_channel": False, "augment": "off"},
    "foreground": {"background": "stylegan2", "mask_channel": True, "augment": "ada"},
}


def load_rows(data: Path, resolution: int):
    from avatar_platform.pipelines.evaluation.report import load_rows as load

    return load(data, resolution)


@functools.cache
def shipped_view_classifier():
    """The package's view classifier, loaded once for every arm and evaluation point."""
    from avatar_platform.pipelines.evaluation import view_classifier

    return view_classifier.load(None)[0]


def evaluate(generator, rows: dict, card: dict) -> dict:
    """The library's metrics (`avatar-platform eval`, view accuracy by the shipped view
    classifier included), without the bookkeeping keys."""
    from avatar_platform.pipelines.evaluation.report import evaluate as evaluate_model

    scores = evaluate_model(generator, rows, card, view_classifier=shipped_view_classifier())
    return {k: v for k, v in scores.items() if k not in ("absent", "samples")}


def write_views(generator, path: Path) -> np.ndarray:
    """Rows = seeds 0–3, columns = front, left, back, right (ψ = 0.7); returns the grid."""
    from avatar_platform.pipelines.evaluation.report import EVAL_SEEDS, EVAL_YAWS, TRUNCATION
    from avatar_platform.pipelines.inference.sampling import multiview_grid, write_png, ws_for_seed

    avatars = [ws_for_seed(generator, seed, TRUNCATION) for seed in EVAL_SEEDS]
    grid = multiview_grid(generator, avatars, len(EVAL_YAWS))
    write_png(grid, path)
    return grid


def write_side_by_side(panels: list[tuple[str, np.ndarray]], path: Path, width: int = 512) -> None:
    """The models' view grids side by side, each scaled to `width` pixels, its caption above."""
    from PIL import Image, ImageDraw

    scaled = [
        (
            caption,
            Image.fromarray(grid).resize((width, width * grid.shape[0] // grid.shape[1]), Image.NEAREST),
        )
        for caption, grid in panels
    ]
    gap, caption_h = 8, 20
    page = Image.new(
        "RGB",
        (len(scaled) * (width + gap) - gap, caption_h + max(image.height for _, image in scaled)),
        "white",
    )
    draw = ImageDraw.Draw(page)
    for i, (caption, image) in enumerate(scaled):
        page.paste(image, (i * (width + gap), caption_h))
        draw.text((i * (width + gap) + 4, 4), caption, fill="black")
    page.save(path)


def add_variant(text: str) -> str:
    """`NAME:key=value,key=value` (dotted keys of the gan config, YAML values) → a new arm: the
    foreground arm with those settings, e.g. `r1-0.1:r1_gamma=0.1,augment.color=false`."""
    import yaml

    name, _, settings = text.partition(":")
    if not name or not settings or name in ARMS:
        raise SystemExit(f"--variant {text!r}: expected NEW_NAME:key=value[,key=value]")
    overrides = {}
    for item in settings.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    ARMS[name] = {**ARMS["foreground"], "overrides": overrides}
    return name


def arm_config(base, arm: str, steps: int):
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    spec = ARMS[arm]
    data = base.model_dump()
    data["generator"]["background"] = spec["background"]
    data["discriminator"]["mask_channel"] = spec["mask_channel"]
    data["augment"]["mode"] = spec["augment"]
    for key, value in spec.get("overrides", {}).items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"arm {arm}: the gan config has no setting {key!r}")
        node[leaf] = value
    data["steps"] = steps
    return GanTrainingConfig.model_validate(data)


def batches(rows: dict, batch_size: int, start_step: int, seed: int = 0):
    """The same endless stream of batches for every arm: epoch e is permutation e of the rows."""
    n = len(rows["image"])
    per_epoch = n // batch_size
    step = start_step
    while True:
        epoch, index = divmod(step, per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(n)
        take = order[index * batch_size : (index + 1) * batch_size]
        yield {key: torch.as_tensor(value[take]) for key, value in rows.items()}
        step += 1


def evaluate_models(args) -> None:
    """One JSON object per trained model (G_ema), on the same rows and with the same metrics as
    the arms; appended to OUT/models.jsonl."""
    import platform

    from avatar_platform.formats.model_folder import load_generator, resolve_model_folder

    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    panels = []
    for item in args.models.split(","):
        name, _, spec = item.partition("=")
        generator = load_generator(spec)
        rows, card = load_rows(args.data, generator.config.img_resolution)
        start = time.perf_counter()
        grid = write_views(generator, args.out / f"views-{name}.png")
        config = json.loads((resolve_model_folder(spec) / "config.json").read_text())
        panels.append((f"{name} (step {config.get('step')})", grid))
        record = {
            "model": name,
            "spec": spec,
            "step": config.get("step"),
            **evaluate(generator, rows, card),
            "data": str(args.data),
            "eval_seconds": 0.0,
            "machine": machine,
        }
        record["eval_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(record), flush=True)
        with (args.out / "models.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    write_side_by_side(panels, args.out / "views.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", default="100,200,300", help="evaluation points (steps)")
    parser.add_argument("--arms", default="baseline,foreground")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--out", type=Path, default=Path(".avatar/bench/fidelity"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--models", default=None, help="NAME=SPEC,…: evaluate these models")
    parser.add_argument(
        "--init", default=None, help="start every arm from this GAN (any --init value: a fine-tune)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value,…: one more arm, the foreground arm with these gan settings (repeatable)",
    )
    args = parser.parse_args()
    for text in args.variant:
        add_variant(text)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.models:
        evaluate_models(args)
        return

    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
    from avatar_platform.pipelines.training.gan.trainer import GanTrainer

    base = resolve_config(GanTrainingConfig, "gan", args.preset)
    points = [int(s) for s in args.steps.split(",")]
    arms = args.arms.split(",")
    rows, card = load_rows(args.data, base.generator.img_resolution)
    if "mask" not in rows and any(ARMS[a]["mask_channel"] for a in arms):
        raise SystemExit(f"{args.data} has no masks: regenerate it with this version")
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["arm"], r["step"]) for r in map(json.loads, results.read_text().splitlines())}

    def new_trainer(arm: str) -> GanTrainer:
        trainer = GanTrainer(arm_config(base, arm, points[-1]))
        if args.init:
            from avatar_platform.pipelines.training.gan.init import check_init, load_init

            load_init(trainer, check_init(args.init, trainer.config), args.init)
        return trainer

    for arm in arms:
        if (arm, 0) not in done:
            trainer = new_trainer(arm)
            record = {"arm": arm, "step": 0, "train_seconds": 0.0, **evaluate(trainer.G_ema, rows, card)}
            print(json.dumps(record), flush=True)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
    for point in points:
        for arm in arms:
            if (arm, point) in done:
                continue
            folder = args.out / arm
            trainer = new_trainer(arm)
            spent = 0.0
            if (folder / "training_state.pt").exists():
                trainer.load(folder)
                spent = json.loads((folder / "bench.json").read_text())["train_seconds"]
            stream = batches(rows, base.batch_size, trainer.step)
            start = time.perf_counter()
            while trainer.step < point:
                metrics = trainer.train_step(next(stream))
            spent += time.perf_counter() - start
            trainer.save(folder)
            (folder / "bench.json").write_text(json.dumps({"train_seconds": spent}))
            write_views(trainer.G_ema, args.out / f"views-{arm}-step{trainer.step:05d}.png")
            record = {
                "arm": arm,
                "step": trainer.step,
                "train_seconds": round(spent, 1),
                "augment_p": round(metrics.get("augment_p", 0.0), 3),
                **evaluate(trainer.G_ema, rows, card),
            }
            print(json.dumps(record), flush=True)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
