"""The `avatar-platform` CLI as a user meets it: help, dry runs, a real run, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trimesh

from avatar_platform.cli.app import main


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["generate"], ["--num-images", "--guidance"]),
        (["registry", "promote"], ["--force", "--alias"]),
        (["cluster", "submit"], ["--address", "--working-dir"]),
    ],
)
def test_help_is_fast_and_imports_no_heavy_library(command, shown):
    probe = (
        "import sys; from avatar_platform.cli.app import main; "
        f"code = main({[*command, '--help']!r}); "
        "heavy = [m for m in ('torch', 'ray', 'diffusers', 'mlflow') if m in sys.modules]; "
        "print('HEAVY', heavy, code)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "HEAVY [] 0" in result.stdout, result.stderr
    assert all(option in result.stdout for option in shown), result.stdout


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("avatar-platform ")


def test_dry_run_prints_the_resolved_config_and_writes_nothing(cli, tmp_path):
    out_dir = tmp_path / "ds"
    code, out, _ = cli(
        "generate --preset tiny --num-images 12 --styles anime,voxel --steps 3 --out", out_dir, "--dry-run"
    )
    assert code == 0
    resolved = json.loads(out)
    assert resolved["out"] == str(out_dir)
    assert resolved["generate"]["num_images"] == 12
    assert resolved["generate"]["styles"] == ["anime", "voxel"]
    assert resolved["generate"]["controlnet"]["steps"] == 3
    assert resolved["generate"]["resolution"] == 32  # from the tiny preset
    assert not out_dir.exists()


@pytest.mark.parametrize("wrapped", [False, True])
def test_ctrl_c_is_exit_130_even_when_a_library_wraps_it(cli, monkeypatch, tmp_path, wrapped):
    from avatar_platform.pipelines.datagen import job

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            if wrapped:  # what a library's clean-up may raise while handling the Ctrl-C
                raise RuntimeError("executor shut down") from interrupt
            raise

    monkeypatch.setattr(job, "run_generate", interrupted)
    code, _, err = cli("generate --preset tiny --out", tmp_path / "ds")
    assert code == 130
    assert "re-run the same command to resume" in err


def test_an_unexpected_error_is_not_taken_for_an_interrupt(monkeypatch, tmp_path):
    from avatar_platform.pipelines.datagen import job

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(job, "run_generate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["generate", "--preset", "tiny", "--out", str(tmp_path / "ds")])


def test_styles_lists_the_catalog(cli):
    code, out, _ = cli("styles")
    assert code == 0 and len(out.strip().splitlines()) == 50 and "bronze-statue" in out


def test_generate_info_preview_and_mlflow_record(cli, ray_session, tmp_path):
    out_dir = tmp_path / "ds"
    code, out, err = cli("generate --preset tiny --out", out_dir)
    assert code == 0, err
    assert f"dataset  {out_dir}" in out and "preview" in out and "mlflow   run" in out
    assert (out_dir / "preview.png").is_file() and (out_dir / "config.resolved.json").is_file()

    code, out, _ = cli("dataset info", out_dir, "--verify")
    assert code == 0
    assert "images       16 at 32x32" in out and "verified     " in out

    code, out, _ = cli("dataset preview", out_dir, "--out", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 0

    import mlflow

    from avatar_platform.core.tracking import point_mlflow

    point_mlflow()
    runs = mlflow.search_runs(experiment_names=["generate"], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.params["num_images"] == "16"
    assert runs[0].data.metrics["images"] == 16
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert {"dataset.json", "preview.png"} <= artifacts


def _user_mesh(tmp_path, landmarks: dict | None):
    mesh_path = tmp_path / "bust.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=0.15).export(mesh_path)
    if landmarks is not None:
        (tmp_path / "bust.landmarks.json").write_text(json.dumps(landmarks))
    return mesh_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--styles", "pixar,not-a-style"], "unknown style 'not-a-style'"),
        (["--backend", "stable-diffusion"], "'generate.backend'"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--num-images", "0"], "'generate.num_images'"),
        (["--num-images", "-5"], "'generate.num_images'"),
        (["--resolution", "30"], "multiple of 8"),
        (["--backend", "controlnet", "--sd-model", "/no/such/sd"], "'/no/such/sd' does not exist"),
        (["--backend", "controlnet", "--sd-model", "someone/sd-model"], "hub is offline"),
        (["--backend", "controlnet", "--guidance", "canny"], "'generate.controlnet.guidance'"),
        (["--pose-noise-mode", "sideways"], "Input should be 'jitter' or 'flip'"),
        (["--ray-address", "127.0.0.1:1"], "no Ray cluster answers at '127.0.0.1:1'"),
        (["--ray-address", "ray://nowhere"], "is not a Ray cluster address"),
    ],
)
def test_bad_flags_give_one_clear_error_and_no_dataset(cli, tmp_path, args, message):
    out_dir = tmp_path / "ds"
    code, _, err = cli("generate --preset tiny --out", out_dir, args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (out_dir / "dataset.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--bogus"], "No such option"),
        (["registry", "promote"], "Missing"),
        (["cluster", "status"], "Missing"),
        (["nonsense"], "No such command"),
        (["serve", "request", "--views", "many"], "Invalid value for '--views'"),
    ],
)
def test_usage_errors_are_one_message_with_exit_2_not_a_traceback(capfd, argv, message):
    code = main(argv)
    err = capfd.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_unknown_config_key_names_the_valid_keys(cli, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("generate:\n  num_imagez: 10\n")
    code, _, err = cli("generate --config", config, "--dry-run")
    assert code == 2
    assert "unknown config key 'generate.num_imagez'" in err and "num_images" in err


@pytest.mark.parametrize(
    ("landmarks", "garbage", "message"),
    [
        ({"nose": [0, 0, 0.15]}, True, "cannot read the template mesh"),
        (None, False, "has no landmarks file"),
        ({"left_eye": [0.05, 0.02, 0.14]}, False, "no 'nose' point"),
        ({"nose": [0, 0, 0.15], "tail": [0, 0, -1]}, False, "unknown names ['tail']"),
    ],
)
def test_bad_template_meshes(cli, tmp_path, landmarks, garbage, message):
    mesh_path = _user_mesh(tmp_path, landmarks)
    if garbage:
        mesh_path.write_bytes(b"\x00\x01 this is not a mesh")
    out_dir = tmp_path / "ds"
    code, _, err = cli("generate --preset tiny --template-mesh", mesh_path, "--out", out_dir)
    assert code == 2 and message in err
    assert not out_dir.exists()


def test_output_folder_that_cannot_be_written(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli("generate --preset tiny --out", blocker / "ds")
    assert code == 2 and "cannot write to the output folder" in err


def test_info_of_an_unfinished_or_missing_dataset(cli, tmp_path):
    (tmp_path / "half" / "_work").mkdir(parents=True)
    code, _, err = cli("dataset info", tmp_path / "half")
    assert code == 2 and "not a complete dataset" in err and "re-run" in err
    code, _, err = cli("dataset preview", tmp_path / "nothing")
    assert code == 2 and "does not exist" in err


def test_more_workers_than_the_cluster_holds(cli, ray_session, tmp_path):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    out_dir = tmp_path / "ds"
    code, _, err = cli("generate --preset tiny --workers", cpus + 1, "--out", out_dir)
    assert code == 2
    assert f"{cpus + 1} workers need {cpus + 1} CPUs but the Ray cluster has {cpus}" in err
    assert not (out_dir / "dataset.json").exists()
