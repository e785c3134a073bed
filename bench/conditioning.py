"""Which identity do a generator's samples show? The mapping sees a camera (EG3D's generator pose
conditioning); this benchmark renders the same z at a procedural dataset's cameras with the
mapping conditioned four ways, and scores each against the dataset's pictures:
- `render`: the rendering camera itself (what EG3D's FID, and `eval` until 2026-12-07, measured);
- `front`: the frontal camera for every view (what `sample`, `serve` and the meshes showed until
  2026-12-07);
- `ring`: the mean of the ws over 12 conditioning yaws at pitch 0 (`rendering.ws_for` now);
- `random`: another of the dataset's cameras, drawn at random per z (the swapped half of training).
Scores: fid (the random-CNN features: they compare the four modes with each other), colour_fd,
colour_spread (evaluation.colour), backdrop (mean RGB outside the opacity, 0-1; the dataset's
beside it), view_accuracy (the shipped view classifier). Then one more line: the backdrop as the
conditioning yaw turns, against the dataset's own backdrop per yaw bin. One JSON object per line.
`--grid PNG` also writes seeds 0-5 (rows) × front, left, back, right at ψ 0.7 in three panels: the
`front` identity, the `render` one (each view conditioned on its own camera: not one avatar), and
the `ring` one.
Usage:
    .venv/bin/python bench/conditioning.py --model starter:demo --data .avatar/demo/dataset \\
        --grid docs/images/identity-front-render-ring.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SWEEP_YAWS = (0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0)


def main() -> None:
    from avatar_platform.formats.model_folder import load_generator, resolve_model_folder
    from avatar_platform.pipelines.evaluation import report
    from avatar_platform.pipelines.evaluation import view_classifier as views
    from avatar_platform.pipelines.evaluation.colour import colour_scores, colour_summary, result_colours
    from avatar_platform.pipelines.evaluation.fid import (
        frechet_distance,
        random_feature_extractor,
        real_features,
    )
    from avatar_platform.pipelines.poses.view_bins import COARSE_VIEW_NAMES
    from avatar_platform.pipelines.rendering import FRONT, cameras, ws_for

    parser = argparse.ArgumentParser(description="Which identity do a generator's samples show?")
    parser.add_argument("--model", default="starter:demo")
    parser.add_argument("--data", default=".avatar/demo/dataset")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--psi", default="1.0,0.7", help="truncations, comma-separated")
    parser.add_argument("--grid", default=None, help="PNG: front, render and ring identities, seeds 0-5")
    args = parser.parse_args()

    generator = load_generator(resolve_model_folder(args.model)).eval()
    rows, _ = report.load_rows(args.data, generator.config.img_resolution, limit=args.samples)
    n = len(rows["camera"])
    render_cams = torch.as_tensor(rows["camera"]).float()
    extract = random_feature_extractor()
    real = real_features(torch.as_tensor(rows["image"]).float() / 127.5 - 1.0, extract)
    real_colours = colour_summary(rows["image"], rows["mask"][:, 0] > 127)
    classifier = views.load(None)[0]
    truth_bins = views.coarse_view_bin(np.asarray(rows["yaw"]))
    z = torch.randn(n, generator.config.z_dim, generator=torch.Generator().manual_seed(0))
    shuffled = render_cams[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
    modes = {
        "render": lambda psi: generator.map(z, render_cams, psi),
        "front": lambda psi: generator.map(z, cameras([FRONT] * n).float(), psi),
        "ring": lambda psi: ws_for(generator, z, psi),
        "random": lambda psi: generator.map(z, shuffled, psi),
    }
    common = {"model": args.model, "data": args.data, "samples": n, "machine": platform.node()}
    with torch.no_grad():
        for psi in (float(p) for p in args.psi.split(",")):
            for mode, identity in modes.items():
                start = time.perf_counter()
                ws = identity(psi)
                out = [generator.synthesis(ws[i : i + 32], render_cams[i : i + 32]) for i in range(0, n, 32)]
                images = torch.cat([o["image"] for o in out]).clamp(-1, 1)
                colours = np.concatenate([result_colours(o) for o in out])
                found = classifier.predict(images)
                result = {
                    **common,
                    "psi": psi,
                    "identity": mode,
                    "fid_random_cnn": frechet_distance(real, extract(images).numpy()),
                    **colour_scores(real_colours, colours),
                    "backdrop": float(colours[:, 3:].mean()),
                    "backdrop_data": float(real_colours[:, 3:].mean()),
                    "view_accuracy": float(np.mean(found["bin"] == truth_bins)),
                    **{
                        f"view_accuracy_{name}": float(np.mean(found["bin"][truth_bins == index] == index))
                        for index, name in enumerate(COARSE_VIEW_NAMES)
                        if (truth_bins == index).any()
                    },
                    "seconds": round(time.perf_counter() - start, 2),
                }
                print(json.dumps(result), flush=True)
        sweep, data_sweep = {}, {}
        yaws = np.asarray(rows["yaw"])
        for yaw in SWEEP_YAWS:
            ws = generator.map(z[:64], cameras([yaw] * 64).float(), 1.0)
            colours = result_colours(generator.synthesis(ws, render_cams[:64]))
            sweep[str(yaw)] = round(float(colours[:, 3:].mean()), 3)
            near = np.abs((yaws - yaw + 180.0) % 360.0 - 180.0) <= 22.5
            data_sweep[str(yaw)] = round(float(real_colours[near, 3:].mean()), 3) if near.any() else None
        print(
            json.dumps({**common, "backdrop_by_conditioning_yaw": sweep, "data_backdrop_by_yaw": data_sweep})
        )
        if args.grid:
            write_grid(generator, args.grid)


def write_grid(generator, path: str) -> None:
    from PIL import Image

    from avatar_platform.pipelines.rendering import (
        FRONT,
        GRID_YAWS,
        cameras,
        latent,
        render,
        to_uint8,
        ws_for,
    )

    def own_camera_row(z):  # each view's identity conditioned on that view's camera
        views = []
        for yaw in GRID_YAWS:
            c = cameras([yaw]).float()
            views.append(to_uint8(generator.synthesis(generator.map(z, c, 0.7), c)["image"])[0])
        return np.concatenate(views, axis=1)

    panels = []
    for mode in ("front", "render", "ring"):
        rows = []
        for seed in range(6):
            z = latent(generator, seed)
            if mode == "render":
                rows.append(own_camera_row(z))
                continue
            ws = (
                ws_for(generator, z, 0.7)
                if mode == "ring"
                else generator.map(z, cameras([FRONT]).float(), 0.7)
            )
            rows.append(np.concatenate(list(render(generator, ws, GRID_YAWS)), axis=1))
        panels.append(np.concatenate(rows, axis=0))
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    grid = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


if __name__ == "__main__":
    from avatar_platform.core.errors import AvatarPlatformError

    try:
        main()
    except AvatarPlatformError as err:  # a missing dataset or model: one line, not a traceback
        raise SystemExit(f"error: {err}") from None
