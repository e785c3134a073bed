"""The model registry: register into the training run, the promotion gate, rollback, bad input,
and the registered pyfunc loading from its alias in a fresh process."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
import trimesh
import yaml
from PIL import Image

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import configure_mlflow
from avatar_platform.pipelines.inference import registry

NAME = registry.MODEL_NAME


pytestmark = pytest.mark.usefixtures("shared_home")  # one MLflow store for the module


@pytest.fixture(scope="module")
def home(module_home) -> Path:
    return module_home


def training_output(tiny_generator, folder: Path, fid: float | None, track: bool) -> Path:
    """What `train gan` leaves: `model/` (with metrics.json) and, when tracked, `run.json` and
    the run's `model` artifact folder."""
    shutil.copytree(tiny_generator, folder / "model")
    (folder / "model" / "metrics.json").unlink()
    if fid is not None:
        (folder / "model" / "metrics.json").write_text(json.dumps({"fid": fid}))
    (folder / "model" / "training_state.pt").write_bytes(b"optimiser state, a pickle")
    if track:
        client = configure_mlflow("train-gan").MlflowClient()
        run = client.create_run(mlflow.get_experiment_by_name("train-gan").experiment_id)
        client.log_artifacts(run.info.run_id, str(folder / "model"), "model")
        client.set_terminated(run.info.run_id)
        (folder / "run.json").write_text(json.dumps({"run_id": run.info.run_id}))
    return folder


@pytest.fixture(scope="module")
def versions(tiny_generator, home, tmp_path_factory):
    """v1: a training output (FID 50); v2: a run id (FID 80); v3: a model folder with no FID."""
    root = tmp_path_factory.mktemp("outputs")
    good = training_output(tiny_generator, root / "good", 50.0, track=True)
    worse = training_output(tiny_generator, root / "worse", 80.0, track=True)
    unknown = training_output(tiny_generator, root / "unknown", None, track=False)
    worse_run = json.loads((worse / "run.json").read_text())["run_id"]
    registered = [registry.register(good), registry.register(worse_run), registry.register(unknown / "model")]
    return {"good": good, "worse_run": worse_run, "registered": registered}


def test_versions_carry_fid_kind_source_and_their_training_run(versions):
    v1, v2, v3 = versions["registered"]
    assert [int(v.version) for v in (v1, v2, v3)] == [1, 2, 3]
    assert v1.tags == {"fid": "50.0", "kind": "generator-only", "source": str(versions["good"].resolve())}
    assert v2.tags["fid"] == "80.0" and v2.tags["source"] == versions["worse_run"]
    assert "fid" not in v3.tags
    good_run = json.loads((versions["good"] / "run.json").read_text())["run_id"]
    assert v1.run_id == good_run and v2.run_id == versions["worse_run"]
    client = mlflow.MlflowClient()
    assert client.get_run(good_run).info.status == "FINISHED"  # registering left it as it was
    assert client.get_experiment(client.get_run(v3.run_id).info.experiment_id).name == "registry"


def test_the_logged_model_holds_safetensors_and_no_pickles(versions):
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "avatar_platform.pipelines.inference.pyfunc"
    assert "python_model" not in flavor
    assert {f"{flavor['data']}/generator_ema.safetensors", f"{flavor['data']}/metrics.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth", ".pickle"))], files
    signature = yaml.safe_load((local / "MLmodel").read_text())["signature"]
    assert "views_png" in signature["outputs"] and "mesh_resolution" in signature["inputs"]


def test_the_gate_refuses_a_worse_model_until_forced_and_rollback_undoes_it(versions):
    assert registry.promote(NAME, 1, "champion").previous is None
    with pytest.raises(AvatarPlatformError) as refused:
        registry.promote(NAME, 2, "champion")
    assert "FID 80" in refused.value.message and "FID 50" in refused.value.message
    assert "--force" in refused.value.message
    with pytest.raises(AvatarPlatformError, match="version 3 \\(no FID\\) is worse"):
        registry.promote(NAME, 3, "champion")
    assert int(registry.resolve_alias(NAME, "champion").version) == 1

    forced = registry.promote(NAME, 2, "champion", force=True)
    assert (forced.version, forced.previous, forced.fid, forced.previous_fid) == (2, 1, 80.0, 50.0)
    listed = {v.version: v for v in registry.list_versions(NAME)}
    assert listed[2].aliases == ["champion"] and listed[1].aliases == []
    assert listed[1].fid == 50.0 and listed[3].fid is None and listed[1].kind == "generator-only"

    back = registry.rollback(NAME, "champion")
    assert (back.version, back.previous) == (1, 2)
    assert int(registry.resolve_alias(NAME, "champion").version) == 1
    with pytest.raises(AvatarPlatformError, match="no earlier holder"):
        registry.rollback(NAME, "champion")


def test_an_equal_or_better_model_is_promoted_without_force(versions):
    registry.promote(NAME, 2, "staging", force=True)
    assert registry.promote(NAME, 1, "staging").previous == 2
    assert registry.promote(NAME, 1, "staging").previous == 1  # already there: nothing to do
    assert registry.rollback(NAME, "staging").version == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: registry.resolve_alias(NAME, "gold"), "has no alias 'gold' (aliases: champion"),
        (lambda: registry.promote(NAME, 99, "champion"), "has no version 99; expected one of [1, 2, 3]"),
        (lambda: registry.promote(NAME, 1, "latest"), "'latest' is not an alias"),
        (lambda: registry.list_versions("nobody"), "no registered model 'nobody'"),
        (lambda: registry.rollback(NAME, "never"), "has no alias 'never' (aliases: "),
    ],
)
def test_bad_names_versions_and_aliases(versions, call, message):
    registry.promote(NAME, 1, "champion", force=True)
    with pytest.raises(AvatarPlatformError) as caught:
        call()
    assert message in caught.value.message


def test_folders_that_are_not_models(tiny_generator, tmp_path):
    with pytest.raises(AvatarPlatformError, match="is not a model"):
        registry.register(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_generator, broken)
    (broken / "generator_ema.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(AvatarPlatformError, match="cannot read the weights"):
        registry.register(broken)
    (tmp_path / "diffusion").mkdir()
    (tmp_path / "diffusion" / "style_denoiser.json").write_text("{}")
    with pytest.raises(AvatarPlatformError, match="has no generator"):
        registry.register(tmp_path / "diffusion")
    with pytest.raises(AvatarPlatformError, match="the FID in --fid is -1"):
        registry.register(tiny_generator, fid=-1)


def test_an_unreachable_registry_is_one_error_in_seconds(monkeypatch, tiny_generator):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    for call in (
        lambda: registry.list_versions(NAME),
        lambda: registry.register(tiny_generator),
        lambda: registry.resolve_package("0123456789abcdef0123456789abcdef"),
    ):
        started = time.perf_counter()
        with pytest.raises(AvatarPlatformError, match="cannot reach the MLflow registry at http"):
            call()
        assert time.perf_counter() - started < 5


def test_the_champion_loads_and_predicts_in_a_fresh_process(versions, home, tmp_path):
    registry.promote(NAME, 1, "champion", force=True)
    script = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        from avatar_platform.core.tracking import point_mlflow
        point_mlflow()
        model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        frame = pd.DataFrame({{"seed": [0, 1], "views": [3, 3], "mesh": [True, True],
                              "mesh_resolution": [24, 24]}})
        out = model.predict(frame)
        for i, row in out.iterrows():
            open(f"{tmp_path}/views{{i}}.png", "wb").write(row["views_png"])
            open(f"{tmp_path}/mesh{{i}}.glb", "wb").write(row["mesh_glb"])
        again = model.predict(frame.iloc[:1])
        print("RESULT", json.dumps({{"rows": len(out), "requests": out["request"].tolist(),
            "same": again["views_png"][0] == out["views_png"][0]}}))
    """)
    env = {**os.environ, "AVATAR_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"rows": 2, "requests": [0, 1], "same": True}
    for i in range(2):
        image = Image.open(tmp_path / f"views{i}.png")
        assert image.size == (3 * 32, 32)  # views × the tiny preset's resolution
        mesh = trimesh.load(
            io.BytesIO((tmp_path / f"mesh{i}.glb").read_bytes()), file_type="glb", force="mesh"
        )
        assert len(mesh.faces) > 0


def test_a_registered_diffusion_model_turns_a_picture_into_avatars_in_a_fresh_process(
    versions, tiny_diffusion, home, tmp_path
):
    registered = registry.register(tiny_diffusion)
    assert registered.tags["kind"] == "diffusion" and registered.tags["fid"] == "123.5"
    registry.promote(NAME, int(registered.version), "challenger")
    picture = tmp_path / "face.png"
    Image.new("RGB", (40, 48), (200, 120, 90)).save(picture)
    script = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        from avatar_platform.core.tracking import point_mlflow
        point_mlflow()
        model = mlflow.pyfunc.load_model("models:/{NAME}@challenger")
        picture = open("{picture}", "rb").read()
        out = model.predict(pd.DataFrame({{"image": [picture], "num_samples": [2], "views": [2]}}))
        print("RESULT", json.dumps({{"samples": out["sample"].tolist(),
            "differ": out["views_png"][0] != out["views_png"][1]}}))
    """)
    env = {**os.environ, "AVATAR_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.split("RESULT ", 1)[1]) == {"samples": [0, 1], "differ": True}
