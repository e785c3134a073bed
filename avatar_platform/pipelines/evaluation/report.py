"""`avatar-platform eval`: what a trained GAN scores against a dataset, and a page to look at.

- fid / kid: G_ema at the dataset's cameras vs the dataset's pictures, each z's identity the one
  that `sample` and `serve` show (`rendering.ws_for`). InceptionV3 features when
  its weights are on this machine (`$AVATAR_HOME/weights/inception_v3_google.pth`), else the fixed
  random CNN, labelled `random-cnn`: those numbers only compare models with each other;
- on procedural data, where the true bust of every avatar is known: geometry (Chamfer distance
  between each seed's mesh and the nearest template bust of the dataset), largest_share and
  border_faces of the raw mesh, outside_volume, and silhouette_iou (opacity vs the nearest bust's
  true silhouette, front / left / back / right);
- rim (and rim_data, the dataset's own pictures): how far the picture overshoots its neural render
  along the silhouette, the halo a person sees (evaluation.rim);
- a metric that cannot be computed is listed under `absent`, with the reason, never as 0.

The same function scores the starter models and `bench/fidelity.py`'s arms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.avatar_spec import TRUNCATION

EVAL_SEEDS = (0, 1, 2, 3)
EVAL_YAWS = (0.0, 90.0, 180.0, -90.0)
MESH_RESOLUTION = 64
TEMPLATES = 16  # dataset busts a mesh is compared with (the nearest counts)
VIEW_ACCURACY_ABSENT = (
    "no view classifier (pass --view-classifier, or train one: dataset train-view-classifier)"
)


def load_rows(data: Path, resolution: int, limit: int | None = None) -> tuple[dict, dict]:
    """Dataset rows decoded at `resolution` (image, yaw, pitch, camera, mask when present), the
    first `limit` of them, and the card."""
    import pyarrow.parquet as pq

    from avatar_platform.formats.dataset_card import read_card
    from avatar_platform.pipelines.training.gan.data import decode_batch

    card = read_card(data)
    parts, count = [], 0
    for shard in card["shards"]:
        table = pq.read_table(Path(data) / shard["file"])
        columns = [c for c in ("image", "yaw", "pitch", "camera", "mask") if c in table.column_names]
        parts.append(decode_batch({c: table[c].to_pylist() for c in columns}, resolution))
        count += table.num_rows
        if limit is not None and count >= limit:
            break
    rows = {key: np.concatenate([p[key] for p in parts])[:limit] for key in parts[0]}
    return rows, card


def feature_extractor():
    """(extractor, its name): Inception when its weights are here, else the random CNN."""
    from avatar_platform.pipelines.evaluation.fid import inception_feature_extractor, random_feature_extractor

    try:
        return inception_feature_extractor(), "inception"
    except AvatarPlatformError:
        return random_feature_extractor(), "random-cnn"


@torch.no_grad()
def picture_scores(generator, rows: dict, samples: int, extractor) -> dict:
    """Every score of G_ema's pictures at the rows' first `samples` cameras (random z per picture,
    ψ = 1), from one pass over them: fid and kid against the rows' pictures, rim, and where the
    dataset has masks colour_fd, colour_spread (evaluation.colour) and rim_data."""
    from avatar_platform.pipelines.evaluation.colour import colour_scores, colour_summary, result_colours
    from avatar_platform.pipelines.evaluation.fid import (
        frechet_distance,
        generated_batches,
        kernel_inception_distance,
        real_features,
    )
    from avatar_platform.pipelines.evaluation.rim import data_rim, result_overshoot

    masked = "mask" in rows
    features, colours, rim_sum, rim_count = [], [], 0.0, 0
    for result in generated_batches(generator, torch.as_tensor(rows["camera"][:samples])):
        features.append(extractor(result["image"].clamp(-1, 1).cpu()).numpy())
        part, count = result_overshoot(result)
        rim_sum, rim_count = rim_sum + part, rim_count + count
        if masked:
            colours.append(result_colours(result))
    real = real_features(torch.as_tensor(rows["image"][:samples]).float() / 127.5 - 1.0, extractor)
    fake = np.concatenate(features)
    subset = max(min(len(real) // 2, 100), 2)
    out = {
        "fid": frechet_distance(real, fake),
        "kid": kernel_inception_distance(real, fake, subset_size=subset),
        "samples": len(real),
        "rim": rim_sum / rim_count if rim_count else float("nan"),
    }
    if masked:
        masks = rows["mask"][:samples, 0] > 127
        out.update(colour_scores(colour_summary(rows["image"][:samples], masks), np.concatenate(colours)))
        out["rim_data"] = data_rim(
            rows["image"][:samples], masks, generator.config.neural_rendering_resolution
        )
    return out


def geometry_absent_reason(card: dict) -> str | None:
    """Why the dataset has no true shapes to compare with (None: it has)."""
    backend = card.get("backend", {}).get("backend")
    if backend != "procedural":
        return (
            f"a {backend} dataset: its busts guided the pictures but are not their true shapes "
            "(geometry needs a procedural dataset)"
        )
    if card.get("template"):
        return "the dataset was rendered from a user template mesh: one shape, no per-avatar truth"
    return None


@torch.no_grad()
def geometry_scores(generator, card: dict, seeds=EVAL_SEEDS) -> dict:
    """Mean over `seeds` (ψ = 0.7) of the geometry metrics against the dataset's busts."""
    from avatar_platform.models.mesh import density_grid, extract_mesh
    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.datagen.spec import plan
    from avatar_platform.pipelines.evaluation.geometry import (
        border_faces,
        largest_component_share,
        nearest_template,
        silhouette_iou,
        volume_outside,
    )
    from avatar_platform.pipelines.inference.sampling import mesh_for_ws
    from avatar_platform.pipelines.poses.conditioning import raycast
    from avatar_platform.pipelines.poses.template import bust_for_seed
    from avatar_platform.pipelines.rendering import cameras, ws_for_seed

    config = GenerateConfig.model_validate(card["config"])
    templates = [bust_for_seed(s) for s in sorted(set(plan(config)["avatar_seed"].to_pylist()))[:TEMPLATES]]
    box = generator.config.box_warp
    res = generator.config.neural_rendering_resolution * 2
    cams = cameras(EVAL_YAWS).float().to(next(generator.parameters()).device)
    keys = ("geometry", "largest_share", "border_faces", "outside_volume", "silhouette_iou")
    out: dict[str, list] = {key: [] for key in keys}
    for seed in seeds:
        ws = ws_for_seed(generator, seed, TRUNCATION)
        mesh = mesh_for_ws(generator, ws, MESH_RESOLUTION, "auto")
        planes = generator.planes(ws)

        def density(points, planes=planes):
            return generator.field(planes, points[None])[0][0, :, 0]

        raw = extract_mesh(density, MESH_RESOLUTION, box, mesh.metadata["level"], border=0, keep="all")
        best, error = nearest_template(mesh, [t.mesh for t in templates], box)
        out["geometry"].append(error)
        out["largest_share"].append(largest_component_share(raw))
        out["border_faces"].append(border_faces(raw, box, MESH_RESOLUTION))
        grid = density_grid(density, MESH_RESOLUTION, box)
        low, high = templates[best].mesh.bounds
        out["outside_volume"].append(volume_outside(grid > mesh.metadata["level"], box, low, high))
        opacity = generator.synthesis(ws.expand(len(cams), -1, -1), cams, neural_rendering_resolution=res)[
            "opacity"
        ]
        for view, camera in enumerate(cams.cpu().numpy()):
            truth = raycast(templates[best], camera.astype(np.float64), res).mask
            out["silhouette_iou"].append(silhouette_iou(opacity[view, 0].cpu().numpy(), truth))
    scores = {key: float(np.mean(values)) for key, values in out.items()}
    scores["border_faces"] = int(sum(out["border_faces"]))
    return scores


def evaluate(
    generator, rows: dict, card: dict, samples: int = 128, extractor=None, view_classifier=None
) -> dict:
    """Every metric this dataset allows, and `absent`: {metric: why not}. `view_classifier`:
    a ViewClassifier (view accuracy of renders at the dataset's cameras), or None."""
    generator.eval()
    features = "random-cnn"
    if extractor is None:
        extractor, features = feature_extractor()
    metrics = {**picture_scores(generator, rows, samples, extractor), "features": features}
    absent = {}
    if view_classifier is None:
        absent["view_accuracy"] = VIEW_ACCURACY_ABSENT
    else:
        from avatar_platform.pipelines.evaluation.view_classifier import view_accuracy

        count = min(samples, len(rows["yaw"]))
        cams = torch.as_tensor(rows["camera"][:count])
        metrics.update(view_accuracy(generator, view_classifier, np.asarray(rows["yaw"][:count]), cams))
    if "mask" not in rows:
        absent.update(dict.fromkeys(("colour_fd", "colour_spread", "rim_data"), "the dataset has no masks"))
    reason = geometry_absent_reason(card)
    if reason is None:
        metrics.update(geometry_scores(generator, card))
    else:
        absent.update({key: reason for key in ("geometry", "silhouette_iou")})
    metrics["absent"] = absent
    return metrics


def write_report(generator, metrics: dict, title: str, path: Path) -> Path:
    """One page: seeds × views (ψ = 0.7) above the numbers."""
    from PIL import Image, ImageDraw

    from avatar_platform.pipelines.inference.sampling import multiview_grid, ws_for_seed

    grid = multiview_grid(
        generator, [ws_for_seed(generator, s, TRUNCATION) for s in EVAL_SEEDS], len(EVAL_YAWS)
    )
    scale = max(1, 512 // grid.shape[1])
    views = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    lines = [title, "rows: seeds 0-3 (psi 0.7); columns: front, left, back, right"]
    for key, value in metrics.items():
        if key == "absent":
            lines += [f"{k}: absent ({why})" for k, why in value.items()]
        elif isinstance(value, float):
            lines.append(f"{key}: {value:.4g}")
        elif key in ("features", "samples", "border_faces", "step"):
            lines.append(f"{key}: {value}")
    page = Image.new("RGB", (max(views.width, 640), views.height + 14 * len(lines) + 16), "white")
    page.paste(views, (0, 0))
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((8, views.height + 8 + 14 * i), line, fill="black")
    page.save(path)
    return path


def run_eval(
    spec: str, data: Path, out: Path, samples: int = 128, view_classifier: str | Path | None = "shipped"
) -> dict:
    """Evaluate model `spec` on dataset `data`: OUT/metrics.json and OUT/report.png; the metrics
    also go to the MLflow run when `spec` is `runs:/<id>…`."""
    from avatar_platform.core.paths import ensure_writable_dir
    from avatar_platform.formats.model_folder import load_generator, resolve_model_folder

    folder = resolve_model_folder(spec)
    generator = load_generator(folder)
    rows, card = load_rows(data, generator.config.img_resolution, limit=samples)
    classifier = None
    if view_classifier is not None:
        from avatar_platform.pipelines.evaluation import view_classifier as views

        if view_classifier != "shipped" or (views.SHIPPED / f"{views.NAME}.json").is_file():
            classifier = views.load(None if view_classifier == "shipped" else view_classifier)[0]
    metrics = evaluate(generator, rows, card, samples, view_classifier=classifier)
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    metrics = {"model": spec, "data": str(data), "step": config.get("step"), **metrics}
    out = ensure_writable_dir(out)
    write_report(generator, metrics, f"{spec} on {data}", out / "report.png")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if spec.startswith("runs:/"):
        _log_to_run(spec.removeprefix("runs:/").split("/")[0], metrics)
    return metrics


def _log_to_run(run_id: str, metrics: dict) -> None:
    import mlflow

    from avatar_platform.core.tracking import point_mlflow

    point_mlflow()
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            client.log_metric(run_id, f"eval/{key}", float(value))
