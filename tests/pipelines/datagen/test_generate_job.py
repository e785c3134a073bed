"""The Ray Data generate job end to end on local Ray: schema, counts, card, resume, previews."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from avatar_platform.core.config import resolve_config
from avatar_platform.formats.dataset_card import (
    export_images,
    read_card,
    verify_shards,
    write_preview,
    yaw_distance,
)
from avatar_platform.formats.dataset_schema import DATASET_SCHEMA
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.job import run_generate
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.poses.view_bins import coarse_view_bin

CONTRACT_COLUMNS = [
    "sample_id",
    "avatar_id",
    "style",
    "prompt",
    "negative_prompt",
    "seed",
    "yaw",
    "pitch",
    "view_bin",
    "camera",
    "image",
    "width",
    "height",
    "backend",
]


def _config(**overrides) -> GenerateConfig:
    return resolve_config(GenerateConfig, "generate", "tiny", overrides=overrides)


def _read_dataset(folder: Path):
    card = read_card(folder)
    tables = [pq.read_table(folder / shard["file"]) for shard in card["shards"]]
    return card, tables


@pytest.fixture(scope="module")
def procedural_dataset(ray_session, tmp_path_factory):
    config = _config(
        num_images=72,
        styles=["pixar", "anime", "bronze-statue"],
        views_per_avatar=8,
        resolution=32,
        workers=2,
        shard_size=16,
    )
    out = tmp_path_factory.mktemp("generate") / "ds"
    summary = run_generate(config, out)
    return config, out, summary


def test_procedural_generate_writes_the_contract_schema(procedural_dataset):
    config, out, summary = procedural_dataset
    assert summary.images == summary.generated_now == 72
    card, tables = _read_dataset(out)
    for table in tables:
        assert table.schema.names[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
        assert table.schema.equals(DATASET_SCHEMA)
        assert table.num_rows <= config.shard_size
    rows = [row for table in tables for row in table.to_pylist()]
    assert len(rows) == 72
    assert {r["backend"] for r in rows} == {"procedural"}
    assert {(r["width"], r["height"]) for r in rows} == {(32, 32)}
    for row in rows[:10]:
        image = Image.open(io.BytesIO(row["image"]))
        assert image.size == (32, 32) and image.mode == "RGB"
        assert len(row["camera"]) == 25
        assert row["view_bin"] == int(coarse_view_bin(row["yaw"]))
        assert Image.open(io.BytesIO(row["openpose_image"])).size == (32, 32)


def test_every_planned_sample_exactly_once_and_counts_in_the_card(procedural_dataset):
    config, out, _ = procedural_dataset
    card, tables = _read_dataset(out)
    ids = [sid for table in tables for sid in table["sample_id"].to_pylist()]
    assert sorted(ids) == sorted(plan(config)["sample_id"].to_pylist())
    assert len(set(ids)) == len(ids)
    assert card["num_images"] == 72
    assert card["counts"]["style"] == {"anime": 24, "bronze-statue": 24, "pixar": 24}
    assert sum(card["counts"]["view_bin"].values()) == 72
    # stratified yaws: 8 views per avatar cover every coarse direction evenly
    assert set(card["counts"]["view_bin"].values()) == {18}
    assert card["backend"] == {"backend": "procedural", "renderer": "procedural/1"}
    assert card["config"] == config.model_dump(mode="json")
    assert verify_shards(out, card) == []
    assert not (out / "_work").exists()


def test_images_follow_their_prompt_and_style(procedural_dataset):
    _, out, _ = procedural_dataset
    _, tables = _read_dataset(out)
    rows = [row for table in tables for row in table.to_pylist()]
    for row in rows:
        assert ("back of the head" in row["prompt"]) == (row["view_bin"] == 2)
    mean = {}
    for row in rows:
        pixels = np.asarray(Image.open(io.BytesIO(row["image"])), np.float32)
        mean.setdefault(row["style"], []).append(pixels.mean(axis=(0, 1)))
    # a bronze statue on a dark background is darker than anime on a light one
    assert np.mean(mean["bronze-statue"]) < np.mean(mean["anime"]) - 40


def test_rerun_of_a_complete_dataset_does_nothing(procedural_dataset):
    config, out, _ = procedural_dataset
    before = {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    again = run_generate(config, out)
    assert again.generated_now == 0 and again.images == 72
    assert before == {p.name: p.stat().st_mtime_ns for p in (out / "data").iterdir()}


def test_run_generate_called_from_python_leaves_its_mlflow_record_and_preview(ray_session, tmp_path):
    import mlflow

    from avatar_platform.core.tracking import point_mlflow

    config = _config(num_images=8, styles=["pixar"], views_per_avatar=4)
    summary = run_generate(config, tmp_path / "ds")
    assert summary.preview == tmp_path / "ds" / "preview.png" and summary.preview.is_file()
    assert (tmp_path / "ds" / "config.resolved.json").is_file()
    point_mlflow()
    run = mlflow.MlflowClient().get_run(summary.run_id)
    assert run.data.params["num_images"] == "8" and run.data.metrics["generated_now"] == 8
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary.run_id)}
    assert {"dataset.json", "preview.png"} <= artifacts
    assert run_generate(config, tmp_path / "ds").run_id is None  # nothing generated, nothing logged


def test_a_second_config_into_the_same_folder_is_refused(procedural_dataset):
    from avatar_platform.core.errors import AvatarPlatformError

    config, out, _ = procedural_dataset
    with pytest.raises(AvatarPlatformError, match="another config"):
        run_generate(config.model_copy(update={"seed": 5}), out)


def test_preview_is_a_styles_by_views_contact_sheet(procedural_dataset, tmp_path):
    _, out, _ = procedural_dataset
    path = write_preview(out, tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[0] == 24 + 3 * 128  # header + one row per style
    assert sheet.shape[1] == 150 + 4 * 128  # labels + front, left, back, right
    cells = sheet[24:, 150:].reshape(3, 128, 4, 128, 3)
    assert (cells.std(axis=(1, 3)) > 5).all()  # every style × view cell holds an image


def test_export_writes_the_images_nearest_a_view_one_per_avatar(procedural_dataset, tmp_path):
    _, out, _ = procedural_dataset
    table = pq.read_table(out / "data", columns=["avatar_id", "yaw", "style"]).to_pylist()
    written = export_images(out, tmp_path / "front", yaw=0.0, count=3, style="anime")
    assert len(written) == 3 and len({p.stem for p in written}) == 3
    for path in written:
        assert Image.open(path).size == (32, 32)
        best = min(yaw_distance(r["yaw"], 0.0) for r in table if r["avatar_id"] == path.stem)
        assert best < 45.0  # each avatar's most frontal view (8 views per avatar)
        assert {r["style"] for r in table if r["avatar_id"] == path.stem} == {"anime"}
    from avatar_platform.core.errors import AvatarPlatformError

    with pytest.raises(AvatarPlatformError, match="no style 'nope'"):
        export_images(out, tmp_path / "x", style="nope")


def _wait_for_parts(driver, out: Path, count: int) -> int:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        parts = len(list((out / "data").glob("part-*.parquet")))
        if parts >= count:
            return parts
        time.sleep(0.05)
    raise AssertionError(f"driver ended early: {driver.stderr.read().decode()[-2000:]}")


def test_resume_after_ctrl_c_and_kill_9_yields_each_sample_once(ray_session, tmp_path):
    out = tmp_path / "ds"
    command = [
        sys.executable,
        "-m",
        "avatar_platform.cli.app",
        "generate",
        "--preset",
        "tiny",
        "--num-images",
        "240",
        "--resolution",
        "96",
        "--out",
        str(out),
        "--ray-address",
        ray_session,
        "--no-track",
        "--no-preview",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start():
        # a shell without job control starts background children with SIGINT ignored; a user's
        # terminal does not, so restore the default for the child as a terminal would
        return subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    # 1. Ctrl-C: a clean stop that says how to resume
    driver = start()
    _wait_for_parts(driver, out, 2)
    driver.send_signal(signal.SIGINT)
    code = driver.wait(timeout=60)
    stderr = driver.stderr.read().decode()
    assert code == 130, stderr[-3000:]
    assert "re-run the same command to resume" in stderr
    assert not (out / "dataset.json").exists()

    # 2. kill -9 of the driver, later in the run
    driver = start()
    kept = len(list((out / "data").glob("part-*.parquet")))
    _wait_for_parts(driver, out, kept + 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not (out / "dataset.json").exists()  # nothing looks complete
    time.sleep(1.0)  # tasks of the dead driver are being torn down

    # 3. the same command finishes the job
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "kept from an earlier run" in resumed.stderr

    card, tables = _read_dataset(out)
    ids = [sid for table in tables for sid in table["sample_id"].to_pylist()]
    config = GenerateConfig.model_validate(card["config"])
    assert len(ids) == len(set(ids)) == 240
    assert set(ids) == set(plan(config)["sample_id"].to_pylist())
    assert verify_shards(out, card) == []


def test_controlnet_backend_through_the_ray_job(ray_session, tiny_sd, tmp_path):
    config = _config(
        backend="controlnet",
        num_images=8,
        styles=["anime"],
        controlnet={**tiny_sd, "guidance": "hybrid", "steps": 2, "batch_size": 4},
    )
    summary = run_generate(config, tmp_path / "ds")
    assert summary.images == 8
    card, tables = _read_dataset(tmp_path / "ds")
    assert card["backend"]["backend"] == "controlnet"
    assert card["backend"]["models"] == {
        "sd_model": tiny_sd["sd_model"],
        "openpose_controlnet": tiny_sd["openpose_controlnet"],
        "depth_controlnet": tiny_sd["depth_controlnet"],
    }
    rows = [row for table in tables for row in table.to_pylist()]
    assert {row["backend"] for row in rows} == {"controlnet"}
    images = [np.asarray(Image.open(io.BytesIO(row["image"]))) for row in rows]
    assert all(image.shape == (32, 32, 3) for image in images)
    assert len({image.tobytes() for image in images}) == 8  # one seed per image
