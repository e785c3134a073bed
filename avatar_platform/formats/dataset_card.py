"""The dataset card (`dataset.json`), `dataset info` and `dataset preview` (a contact sheet PNG)."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from avatar_platform import __version__
from avatar_platform.core.digest import file_sha256
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import atomic_write_bytes, ensure_writable_dir
from avatar_platform.pipelines.poses.view_bins import COARSE_VIEW_NAMES

CARD_FORMAT_VERSION = 1


def write_card(
    out: Path, config, config_hash: str, part_names: list[str], backend: dict, masks: dict | None = None
) -> dict:
    """Count, hash and describe the parts, then write `dataset.json` atomically (the last step).
    `masks` describes the `mask` column (its "source" at least); None: the shards have none."""
    data_dir = out / "data"
    styles: Counter = Counter()
    views: Counter = Counter()
    shards = []
    for name in part_names:
        table = pq.read_table(data_dir / name, columns=["style", "view_bin"])
        styles.update(table["style"].to_pylist())
        views.update(COARSE_VIEW_NAMES[v] for v in table["view_bin"].to_pylist())
        shards.append(
            {"file": f"data/{name}", "rows": table.num_rows, "sha256": file_sha256(data_dir / name)}
        )
    card = {
        "format_version": CARD_FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "avatar_platform_version": __version__,
        "num_images": sum(s["rows"] for s in shards),
        "resolution": config.resolution,
        "backend": backend,
        "counts": {
            "style": dict(sorted(styles.items())),
            "view_bin": {name: views.get(name, 0) for name in COARSE_VIEW_NAMES},
        },
        "shards": shards,
        "template": template_identity(config),
        "masks": masks,
        "config_hash": config_hash,
        "config": config.model_dump(mode="json"),
    }
    atomic_write_bytes(out / "dataset.json", (json.dumps(card, indent=2) + "\n").encode())
    return card


def template_identity(config) -> dict | None:
    """The user template mesh and landmarks files with their sha256; None for built-in busts."""
    if not getattr(config, "template_mesh", None):
        return None
    from avatar_platform.pipelines.poses.template import template_digests

    return template_digests(config.template_mesh, config.template_landmarks)


def read_card(folder: Path) -> dict:
    """The card of a complete dataset, or one error saying what the folder is instead."""
    folder = Path(folder)
    card_path = folder / "dataset.json"
    if not folder.is_dir():
        raise AvatarPlatformError(
            f"dataset folder '{folder}' does not exist", fix="pass the --out of a generate run"
        )
    if not card_path.is_file():
        hint = (
            "it is an unfinished run: re-run the same generate command to finish it"
            if (folder / "_work").is_dir()
            else "pass the folder that `avatar-platform generate` wrote"
        )
        raise AvatarPlatformError(f"'{folder}' is not a complete dataset (no dataset.json)", fix=hint)
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise AvatarPlatformError(f"'{card_path}' is not valid JSON ({err})") from None


def verify_shards(folder: Path, card: dict) -> list[str]:
    """Shards whose content no longer matches the card's hash."""
    return [s["file"] for s in card["shards"] if file_sha256(Path(folder) / s["file"]) != s["sha256"]]


def format_card(folder: Path, card: dict) -> str:
    """A human-readable summary of the card."""
    backend = card["backend"]
    lines = [
        f"dataset      {Path(folder).resolve()}",
        f"images       {card['num_images']} at {card['resolution']}x{card['resolution']}",
        f"backend      {backend.get('backend')} "
        + json.dumps({k: v for k, v in backend.items() if k != "backend"}),
        f"shards       {len(card['shards'])} Parquet files",
        f"created      {card['created']} (avatar-platform {card['avatar_platform_version']})",
        "view bins    " + ", ".join(f"{name} {count}" for name, count in card["counts"]["view_bin"].items()),
        f"styles       {len(card['counts']['style'])}: "
        + ", ".join(f"{name} {count}" for name, count in card["counts"]["style"].items()),
        f"masks        {mask_summary(card)}",
    ]
    return "\n".join(lines)


def mask_summary(card: dict) -> str:
    """How the dataset's masks were made, or that it has none (written before masks)."""
    masks = card.get("masks")
    if not masks or not masks.get("source"):
        return "none (written before masks; mask-aware training is off)"
    extra = {k: v for k, v in masks.items() if k in ("dilation_px", "model")}
    return masks["source"] + (" " + json.dumps(extra) if extra else "")


def yaw_distance(a: float, b: float) -> float:
    """Degrees between two yaws, the short way round (0–180)."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def export_images(
    folder: Path, out: Path, yaw: float = 0.0, count: int = 4, style: str | None = None
) -> list[Path]:
    """Write the `count` images (of distinct avatars) seen nearest `yaw` as PNG files in `out`
    — e.g. frontal pictures to try `sample --image` with."""
    card = read_card(folder)
    if style is not None and style not in card["counts"]["style"]:
        raise AvatarPlatformError(
            f"the dataset has no style '{style}'", expected=f"one of: {', '.join(card['counts']['style'])}"
        )
    candidates = []  # (distance, avatar, file, row)
    for shard in card["shards"]:
        table = pq.read_table(Path(folder) / shard["file"], columns=["style", "avatar_id", "yaw"])
        columns = (table[c].to_pylist() for c in ("style", "avatar_id", "yaw"))
        for row, (name, avatar, seen) in enumerate(zip(*columns, strict=True)):
            if style is None or name == style:
                candidates.append((yaw_distance(seen, yaw), avatar, shard["file"], row))
    chosen, avatars = [], set()
    for candidate in sorted(candidates):
        if candidate[1] not in avatars:
            avatars.add(candidate[1])
            chosen.append(candidate)
        if len(chosen) == count:
            break
    out = ensure_writable_dir(Path(out))
    written = []
    for _, avatar, file, row in chosen:
        data = pq.read_table(Path(folder) / file, columns=["image"]).slice(row, 1)["image"][0]
        path = out / f"{avatar}.png"
        atomic_write_bytes(path, data.as_py())
        written.append(path)
    return written


def contact_sheet(folder: Path, max_styles: int = 12, cell: int = 128) -> np.ndarray:
    """(H, W, 3) uint8 grid: one row per style, one column per view bin (front, left, back,
    right), each cell the image of that style nearest the bin's central yaw; grey where none."""
    from PIL import Image, ImageDraw

    card = read_card(folder)
    styles = list(card["counts"]["style"])[:max_styles]
    centre = {view: 90.0 * view for view in range(len(COARSE_VIEW_NAMES))}
    best: dict[tuple[str, int], tuple[float, str, int]] = {}  # → (distance, file, row)
    for shard in card["shards"]:
        table = pq.read_table(Path(folder) / shard["file"], columns=["style", "view_bin", "yaw"])
        rows = zip(*(table[c].to_pylist() for c in ("style", "view_bin", "yaw")), strict=True)
        for row, (style, view, yaw) in enumerate(rows):
            off = yaw_distance(yaw, centre[view])
            if style in styles and off < best.get((style, view), (999.0,))[0]:
                best[(style, view)] = (off, shard["file"], row)
    found: dict[tuple[str, int], bytes] = {}
    for file in {file for _, file, _ in best.values()}:
        images = pq.read_table(Path(folder) / file, columns=["image"])["image"]
        for key, (_, chosen, row) in best.items():
            if chosen == file:
                found[key] = images[row].as_py()
    label_w, header_h = 150, 24
    sheet = Image.new(
        "RGB", (label_w + cell * len(COARSE_VIEW_NAMES), header_h + cell * len(styles)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for col, name in enumerate(COARSE_VIEW_NAMES):
        draw.text((label_w + col * cell + 4, 6), name, fill=(0, 0, 0))
    for row, style in enumerate(styles):
        y = header_h + row * cell
        draw.text((4, y + cell // 2 - 6), style, fill=(0, 0, 0))
        for col in range(len(COARSE_VIEW_NAMES)):
            x = label_w + col * cell
            data = found.get((style, col))
            if data is None:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(200, 200, 200))
                continue
            tile = Image.open(io.BytesIO(data)).convert("RGB").resize((cell, cell))
            sheet.paste(tile, (x, y))
    return np.asarray(sheet)


def write_preview(folder: Path, out: Path | None = None, max_styles: int = 12) -> Path:
    """Write the contact sheet PNG (default: `<dataset>/preview.png`) and return its path."""
    from PIL import Image

    out = Path(out) if out else Path(folder) / "preview.png"
    buffer = io.BytesIO()
    Image.fromarray(contact_sheet(folder, max_styles)).save(buffer, format="PNG")
    atomic_write_bytes(out, buffer.getvalue())
    return out
