"""`avatar-platform eval ablation`: arms trained and scored one by one, resumable without redoing a
finished arm, tracked as one MLflow parent run with a child per arm; bad plans refused up front."""

from __future__ import annotations

import json
import math

import mlflow
import pytest

from avatar_platform.cli.app import main
from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import point_mlflow
from avatar_platform.pipelines.evaluation.ablation import (
    Ablation,
    AblationConfig,
    arms_of,
    markdown_table,
    summarise,
)


class Stop(KeyboardInterrupt):
    """A Ctrl-C at a chosen stage."""


def tiny_plan(**overrides) -> AblationConfig:
    return resolve_config(AblationConfig, "ablation", "tiny", overrides=overrides)


def test_a_two_arm_ablation_resumes_after_an_interruption_without_redoing_the_finished_arm(
    ray_session, tmp_path
):
    config = tiny_plan()
    first, second = arms_of(config)
    out = tmp_path / "ablation"
    seen: list[tuple[str, str]] = []

    def interrupt_second_eval(arm, stage):
        seen.append((arm.name, stage))
        if arm == second and stage == "eval":
            raise Stop()

    with pytest.raises(Stop):
        Ablation(config, out, "tiny", hook=interrupt_second_eval).run()
    job = Ablation(config, out, "tiny")
    assert job.result_file(first).is_file() and not job.result_file(second).is_file()
    assert (job.arm_dir(second) / "train" / "model").is_dir()  # trained, cut before its score
    done_at = job.result_file(first).stat().st_mtime_ns
    interim = json.loads((out / "results.json").read_text())
    assert [a["arm"] for a in interim["arms"]] == [first.name] and interim["pending"] == [second.name]
    assert seen == [
        (first.name, "generate"),
        (first.name, "train"),
        (first.name, "eval"),
        (second.name, "train"),
        (second.name, "eval"),
    ]
    point_mlflow()
    client = mlflow.MlflowClient()
    parent = json.loads((out / "ablation.json").read_text())["mlflow_run"]
    assert client.get_run(parent).info.status == "KILLED"  # the Ctrl-C, until the re-run

    again: list[tuple[str, str]] = []
    summary = Ablation(config, out, "tiny", hook=lambda arm, stage: again.append((arm.name, stage))).run()
    assert again == [(second.name, "eval")]  # no dataset, no training, nothing of the first arm
    assert summary.finished == [first.name] and summary.trained == [second.name]
    assert job.result_file(first).stat().st_mtime_ns == done_at

    results = json.loads((out / "results.json").read_text())
    assert results["pending"] == [] and {a["mode"] for a in results["arms"]} == {"coarse-to-fine", "camera"}
    for arm in results["arms"]:
        for metric in ("geometry", "silhouette_iou", "view_accuracy", "fid"):
            assert math.isfinite(arm["metrics"][metric]), (arm["arm"], metric)
    table = (out / "results.md").read_text()
    assert "| 0.5 | coarse-to-fine | 0 |" in table and "| 0.5 | camera | 0 |" in table
    assert (out / "ablation.png").stat().st_size > 10_000

    assert client.get_run(parent).info.status == "FINISHED"
    experiment = client.get_experiment_by_name("ablation").experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(run.info.run_name for run in children) == sorted([first.name, second.name])
    assert all("geometry" in run.data.metrics for run in children)
    trained = client.search_runs(
        [client.get_experiment_by_name("train-gan").experiment_id], f"tags.`ablation.run` = '{parent}'"
    )
    assert len(trained) == 2  # each arm's training run points back to the ablation


def test_an_ablation_folder_refuses_another_plan(ray_session, tmp_path):
    out = tmp_path / "ablation"

    def stop_at_once(arm, stage):
        raise Stop()

    with pytest.raises(Stop):
        Ablation(tiny_plan(), out, "tiny", track=False, hook=stop_at_once).run()
    assert (out / "ablation.json").is_file()
    with pytest.raises(AvatarPlatformError, match="another plan"):
        Ablation(tiny_plan(seeds=[0, 1]), out, "tiny", track=False).check()
    Ablation(tiny_plan(), out, "tiny", track=False).check()  # the same plan continues


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--modes", "coarse-to-fine,sideways", "sideways"),
        ("--noise-levels", "0,1.5", "noise level 1.5"),
        ("--noise-levels", "0,lots", "not a list of numbers"),
        ("--seeds", "0,0", "listed twice"),
        ("--noise-mode", "shuffle", "shuffle"),
    ],
)
def test_eval_ablation_refuses_a_plan_it_cannot_run(flag, value, said, tmp_path, capsys):
    code = main(["eval", "ablation", "--preset", "tiny", flag, value, "--out", str(tmp_path / "a")])
    assert code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing written


def test_the_table_gives_mean_and_spread_over_seeds_and_marks_the_best():
    def result(mode, seed, geometry):
        return {"noise": 0.5, "mode": mode, "seed": seed, "metrics": {"geometry": geometry}}

    done = [
        result("coarse-to-fine", 0, 0.010),
        result("coarse-to-fine", 1, 0.030),
        result("camera", 0, 0.040),
    ]
    rows = summarise(done)
    assert [r["mode"] for r in rows] == ["coarse-to-fine", "camera"]
    assert rows[0]["geometry"]["mean"] == pytest.approx(0.020)
    assert rows[0]["geometry"]["std"] == pytest.approx(math.sqrt(2) * 0.010)
    table = markdown_table({"preset": "tiny", "plan": {}, "summary": rows, "pending": ["x"]})
    assert "| 0.5 | coarse-to-fine | 0,1 | **0.02 ± 0.014** |" in table
    assert "| 0.5 | camera | 0 | 0.04 |" in table and "Pending arms (1): x" in table
