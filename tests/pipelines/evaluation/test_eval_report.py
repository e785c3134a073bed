"""`avatar-platform eval`: every metric the dataset allows, written to metrics.json with a report
page; what cannot be computed is absent with its reason, never 0."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from PIL import Image

from avatar_platform.cli.app import main
from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.job import run_generate

GEOMETRY = ("geometry", "silhouette_iou", "largest_share", "outside_volume")


@pytest.fixture(scope="module")
def procedural(ray_session, tmp_path_factory):
    config = resolve_config(GenerateConfig, "generate", "tiny", overrides={"num_images": 16})
    out = tmp_path_factory.mktemp("eval-data") / "ds"
    run_generate(config, out)
    return out


def test_eval_scores_a_model_on_procedural_data_and_writes_its_report(
    procedural, tiny_generator, tmp_path, capsys
):
    out = tmp_path / "eval"
    code = main(
        ["eval", str(tiny_generator), "--data", str(procedural), "--num-samples", "8", "--out", str(out)]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("fid", "kid", *GEOMETRY):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["silhouette_iou"] <= 1.0 and metrics["samples"] == 8
    for key in ("rim", "rim_data"):  # the halo measure, for the renders and the data's pictures
        assert math.isfinite(metrics[key]) and metrics[key] >= 0.0, key
    assert metrics["features"] == "random-cnn"  # no Inception weights on a test machine
    assert metrics["absent"] == {}  # view accuracy from the shipped view classifier
    assert 0.0 <= metrics["view_accuracy"] <= 1.0 and metrics["view_yaw_error_deg"] >= 0
    assert f"geometry        {metrics['geometry']:.4g}" in printed.out
    with Image.open(out / "report.png") as report:
        assert report.width >= 512 and report.height > report.width // 2


def test_eval_reports_geometry_absent_with_the_reason_on_a_controlnet_dataset(
    procedural, tiny_generator, tmp_path
):
    data = tmp_path / "sd-data"
    shutil.copytree(procedural, data)
    card = json.loads((data / "dataset.json").read_text())
    card["backend"] = {"backend": "controlnet", "sd_model": "a-local-sd"}
    (data / "dataset.json").write_text(json.dumps(card))
    code = main(
        ["eval", str(tiny_generator), "--data", str(data), "--num-samples", "4", "--out", str(tmp_path / "e")]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert not any(key in metrics for key in GEOMETRY[:2])
    assert "controlnet dataset" in metrics["absent"]["geometry"] and "fid" in metrics


@pytest.mark.parametrize("count", ["1", "50001"])
def test_eval_refuses_a_sample_count_it_cannot_use(count, tiny_generator, tmp_path, capsys):
    code = main(["eval", str(tiny_generator), "--data", str(tmp_path), "--num-samples", count])
    assert code == 2 and "--num-samples" in capsys.readouterr().err
