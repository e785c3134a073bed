"""Novel-view fidelity of picture → avatar: what the avatar looks like where the picture does
not show it, against the procedural world's ground truth.

For each held-out avatar of a procedural dataset (generate it with another --seed than the
training data), its most frontal picture goes to the style diffusion (`ws_from_image`, as
`sample --image` does). The avatar is rendered at every camera of that avatar in the dataset and
compared with the true renders there, grouped by view: `input` (the picture's own camera),
`front` (the other frontal camera), `side` (left and right), `back`:
- image_l1: mean absolute difference, 0–1 scale, at the generator's resolution;
- silhouette_iou: opacity ≥ 0.5 at the neural-rendering resolution vs the dataset mask.
Beside it, the mean-w baseline (the same generator's average avatar) on the same cameras, and
with --refine/--tune the refinement of `sample --image --refine N --tune M` (issue #16): `refine`
= the best of --num-samples diffusion candidates, then N projection steps at the frontal camera;
`tune` = that, then M steps of pivotal tuning (the tuned copy renders the avatar).
One JSON object per (model, method); a contact sheet OUT/novel-view-NAME.png (rows per avatar:
truth, diffusion, mean w[, refine, tune]; columns: the input camera, then the avatar's other cameras by yaw).
Usage:
    .venv/bin/python bench/novel_view.py --data .avatar/bench/heldout \\
        --models starter=.avatar/demo/diffusion,scratch=.avatar/bench/scratch-diffusion
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

VIEW_NAMES = {0: "front", 1: "side", 2: "back", 3: "side"}  # the dataset's coarse view bins
GROUPS = ("input", "front", "side", "back")


def avatars(data: Path, count: int) -> list[dict]:
    """The first `count` avatars of the dataset: their rows (PNG bytes, camera, yaw, view bin)
    with the most frontal row first."""
    import pyarrow.parquet as pq

    from avatar_platform.formats.dataset_card import read_card

    card = read_card(data)
    if card["backend"]["backend"] != "procedural":
        raise SystemExit(f"{data} is a {card['backend']['backend']} dataset: no ground truth")
    columns = ["avatar_id", "image", "mask", "camera", "yaw", "view_bin"]
    groups: dict[str, list[dict]] = {}
    for shard in card["shards"]:
        for row in pq.read_table(data / shard["file"], columns=columns).to_pylist():
            groups.setdefault(row["avatar_id"], []).append(row)
    if not all(r["mask"] for rows in groups.values() for r in rows):
        raise SystemExit(f"{data} has no masks: regenerate it with this version")
    chosen = [groups[key] for key in sorted(groups)[:count]]
    return [
        sorted(rows, key=lambda r: (abs(r["yaw"]) > min(abs(x["yaw"]) for x in rows), r["yaw"]))
        for rows in chosen
    ]


def decode(rows: list[dict], resolution: int, mask_resolution: int):
    """Truth images (N, 3, R, R) in [-1, 1], masks (N, r, r) bool, cameras (N, 25)."""
    from avatar_platform.pipelines.training.gan.data import decode_batch, decode_mask

    batch = decode_batch(
        {k: [r[k] for r in rows] for k in ("image", "yaw", "camera")} | {"pitch": [0.0] * len(rows)},
        resolution,
    )
    images = torch.as_tensor(batch["image"]).float() / 127.5 - 1.0
    masks = [decode_mask(r["mask"], picture(r).size, mask_resolution)[0] > 127 for r in rows]
    return images, np.stack(masks), torch.as_tensor(batch["camera"])


def picture(row: dict):
    """The row's image as the RGB picture a user would upload."""
    from PIL import Image

    with Image.open(io.BytesIO(row["image"])) as image:
        return image.convert("RGB")


@torch.no_grad()
def score(generator, ws: torch.Tensor, images, masks, cams, groups: list[str]) -> dict:
    """Per group: image L1 (0–1) and silhouette IoU of one avatar rendered at `cams`."""
    from avatar_platform.pipelines.evaluation.geometry import silhouette_iou

    out = generator.synthesis(ws.expand(len(cams), -1, -1), cams.float())
    l1 = ((out["image"].clamp(-1, 1) - images).abs().mean(dim=(1, 2, 3)) / 2).numpy()
    opacity = out["opacity"][:, 0].numpy()
    ious = [silhouette_iou(opacity[i], masks[i]) for i in range(len(cams))]
    result = {}
    for group in GROUPS:
        picked = [i for i, g in enumerate(groups) if g == group]
        if picked:
            result[group] = (float(np.mean(l1[picked])), float(np.mean([ious[i] for i in picked])))
    return result, out["image"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="held-out procedural dataset")
    parser.add_argument("--models", required=True, help="NAME=SPEC,… (style diffusion models)")
    parser.add_argument("--avatars", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(".avatar/bench/novel-view"))
    parser.add_argument("--sheet", type=int, default=4, help="avatars in the contact sheet")
    parser.add_argument("--refine", type=int, default=0, help="projection steps (0: no refine rows)")
    parser.add_argument("--tune", type=int, default=0, help="pivotal-tuning steps after --refine")
    parser.add_argument("--num-samples", type=int, default=4, help="diffusion candidates for --refine")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from avatar_platform.formats.model_folder import load_generator, resolve_package_folder
    from avatar_platform.formats.pictures import image_tensor
    from avatar_platform.pipelines.inference import refine as refining
    from avatar_platform.pipelines.inference.sampling import write_png
    from avatar_platform.pipelines.inference.style_sampling import ws_from_image
    from avatar_platform.pipelines.rendering import to_uint8

    args.out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    chosen = avatars(args.data, args.avatars)
    for item in args.models.split(","):
        name, _, spec = item.partition("=")
        package = resolve_package_folder(spec)
        generator = load_generator(package)
        res = generator.config.img_resolution
        mask_res = generator.config.neural_rendering_resolution
        mean_w = generator.mapping.w_avg[None, None].expand(1, generator.mapping.num_ws, -1)
        totals = {"diffusion": {}, "mean-w": {}}
        if args.refine:
            totals["refine"] = {}
        if args.refine and args.tune:
            totals["tune"] = {}
        seconds_by = dict.fromkeys(totals, 0.0)
        sheet = []
        start = time.perf_counter()
        for index, rows in enumerate(chosen):
            images, masks, cams = decode(rows, res, mask_res)
            groups = ["input"] + [VIEW_NAMES[r["view_bin"]] for r in rows[1:]]
            ws = ws_from_image(package, generator, picture(rows[0]), 1)[:1]
            arms = [("diffusion", generator, ws), ("mean-w", generator, mean_w)]
            if args.refine:
                began = time.perf_counter()
                candidates = ws_from_image(package, generator, picture(rows[0]), args.num_samples)
                target = image_tensor(picture(rows[0]), res)[None]
                with torch.enable_grad():
                    result = refining.refine(generator, target, candidates, args.refine, 0)
                seconds_by["refine"] += time.perf_counter() - began
                arms.append(("refine", generator, result.ws))
                if args.tune:
                    began = time.perf_counter()
                    features = refining.PerceptualFeatures()
                    with torch.enable_grad():
                        tuned, _ = refining.pivotal_tune(
                            generator, target, result.ws, 0.0, 0.0, args.tune, features, seed=index
                        )
                    seconds_by["tune"] += time.perf_counter() - began
                    arms.append(("tune", tuned, result.ws))
            renders = [images]
            for method, model, w in arms:
                scores, rendered = score(model, w, images, masks, cams, groups)
                renders.append(rendered)
                for group, values in scores.items():
                    totals[method].setdefault(group, []).append(values)
            if index < args.sheet:
                sheet.append(
                    np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in renders], axis=0)
                )
        seconds = time.perf_counter() - start
        write_png(np.concatenate(sheet, axis=0), args.out / f"novel-view-{name}.png")
        for method, groups_scores in totals.items():
            record = {"model": name, "spec": spec, "method": method, "avatars": len(chosen)}
            for group, values in groups_scores.items():
                record[f"l1_{group}"] = round(float(np.mean([v[0] for v in values])), 4)
                record[f"iou_{group}"] = round(float(np.mean([v[1] for v in values])), 4)
            if method in ("refine", "tune"):
                record.update(steps=args.refine if method == "refine" else args.tune)
                record["method_seconds_per_avatar"] = round(seconds_by[method] / len(chosen), 2)
            record.update({"seconds": round(seconds, 1), "machine": machine})
            print(json.dumps(record), flush=True)
            with (args.out / "results.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
