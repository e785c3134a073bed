"""Preset → YAML file → flags resolution of `avatar_platform.core.config`, on GenerateConfig."""

from __future__ import annotations

import json

import pytest

from avatar_platform.core.config import PRESETS, deep_merge, load_preset, resolve_config, save_resolved
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.datagen.config import GenerateConfig

SECTION = "generate"


def resolve(preset: str = "tiny", config_file=None, overrides=None) -> GenerateConfig:
    return resolve_config(GenerateConfig, SECTION, preset, config_file, overrides)


def resolve_error(preset: str = "tiny", config_file=None, overrides=None) -> AvatarPlatformError:
    """The error resolving these raises (the test fails if none is raised)."""
    with pytest.raises(AvatarPlatformError) as info:
        resolve(preset, config_file, overrides)
    return info.value


def write(tmp_path, text: str, name: str = "user.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_resolves_to_its_values(preset):
    config = resolve(preset)
    assert isinstance(config, GenerateConfig)
    expected = load_preset(preset)[SECTION]
    assert config.num_images == expected["num_images"]
    assert config.resolution == expected["resolution"]
    assert config.backend == expected["backend"]
    assert config.controlnet.steps == expected["controlnet"]["steps"]


def test_paper_preset_is_the_paper_scale():
    config = resolve("paper")
    assert config.num_images == 500_000
    assert config.resolution == 512
    assert config.styles == ["all"]


def test_yaml_file_overrides_preset_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, "generate:\n  num_images: 40\n  camera:\n    radius: 3.0\n")
    config = resolve("tiny", path)
    assert config.num_images == 40
    assert config.camera.radius == 3.0
    # untouched keys keep the preset's values, nested siblings their defaults
    assert config.resolution == load_preset("tiny")[SECTION]["resolution"]
    assert config.camera.focal == pytest.approx(4.2647)
    assert config.controlnet.steps == load_preset("tiny")[SECTION]["controlnet"]["steps"]


def test_flags_win_over_the_file(tmp_path):
    path = write(tmp_path, "generate:\n  num_images: 40\n  camera:\n    radius: 3.0\n")
    config = resolve("tiny", path, {"num_images": 72, "camera": {"radius": 2.5}})
    assert config.num_images == 72
    assert config.camera.radius == 2.5


def test_none_valued_overrides_are_ignored(tmp_path):
    path = write(tmp_path, "generate:\n  num_images: 40\n")
    config = resolve(
        "tiny", path, {"num_images": None, "seed": None, "camera": {"radius": None}, "workers": 3}
    )
    assert config.num_images == 40
    assert config.seed == 0
    assert config.camera.radius == 2.7
    assert config.workers == 3


def test_empty_file_keeps_the_preset(tmp_path):
    assert resolve("tiny", write(tmp_path, "")) == resolve("tiny")


@pytest.mark.parametrize(
    ("flags", "yaml", "named", "expected", "suggested"),
    [
        ({"num_imagez": 3}, None, "'generate.num_imagez'", ["num_images", "views_per_avatar"], "num_images"),
        ({}, "generate:\n  resolutoin: 64\n", "'generate.resolutoin'", ["resolution"], "resolution"),
        ({}, "generat:\n  num_images: 3\n", "unknown section 'generat'", ["generate"], "generate"),
    ],
)
def test_a_misspelt_key_or_section_is_named_with_its_source_and_a_suggestion(
    tmp_path, flags, yaml, named, expected, suggested
):
    path = write(tmp_path, yaml) if yaml else None
    error = resolve_error("tiny", path, overrides=flags)
    message = str(error)
    assert named in message and f"did you mean '{suggested}'?" in message
    assert all(key in error.expected for key in expected)
    if path is not None:
        assert str(path) in message


def test_unknown_nested_key_names_the_dotted_path_and_the_nested_keys():
    error = resolve_error("tiny", overrides={"camera": {"radiuss": 3.0}})
    message = str(error)
    assert "'generate.camera.radiuss'" in message
    # the valid keys are those of the camera section, not of the top level
    for key in ("radius", "focal", "look_at", "yaw_range", "pitch_range"):
        assert key in error.expected
    assert "num_images" not in error.expected
    assert "did you mean 'radius'?" in message


def test_unknown_key_far_from_any_valid_one_has_no_suggestion():
    error = resolve_error("tiny", overrides={"zzzzqqqq": 1})
    assert "'generate.zzzzqqqq'" in str(error)
    assert error.fix is None


def test_invalid_yaml_raises_naming_the_file(tmp_path):
    path = write(tmp_path, "generate: [num_images: 3\n  : :\n")
    message = str(resolve_error("tiny", path))
    assert "not valid YAML" in message
    assert str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_raises(tmp_path, text):
    path = write(tmp_path, text)
    message = str(resolve_error("tiny", path))
    assert str(path) in message
    assert "mapping of sections" in message


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nope.yaml"
    message = str(resolve_error("tiny", path))
    assert "does not exist" in message
    assert str(path) in message


def test_unknown_preset_raises_listing_presets():
    message = str(resolve_error("huge"))
    assert "unknown preset 'huge'" in message
    for preset in PRESETS:
        assert preset in message


@pytest.mark.parametrize(
    ("overrides", "dotted", "flag"),
    [
        ({"num_images": 0}, "generate.num_images", "--num-images"),
        ({"resolution": 36}, "generate.resolution", "--resolution"),
        ({"views_per_avatar": 0}, "generate.views_per_avatar", "--views-per-avatar"),
    ],
)
def test_invalid_value_names_the_dotted_key(overrides, dotted, flag):
    message = str(resolve_error("tiny", overrides=overrides))
    assert f"'{dotted}'" in message
    assert f"invalid value {next(iter(overrides.values()))}" in message
    assert flag in message


def test_a_bad_item_of_a_list_flag_names_the_item_and_the_flag():
    from avatar_platform.pipelines.evaluation.ablation import AblationConfig

    with pytest.raises(AvatarPlatformError) as info:
        resolve_config(AblationConfig, "ablation", "tiny", None, {"modes": ["fine", "bogus"]})
    message = str(info.value)
    assert "invalid value \"bogus\" for item 1 of 'ablation.modes'" in message
    assert "pass a valid --modes" in message and "modes.1" not in message


def test_resolution_not_multiple_of_8_explains_why():
    assert "multiple of 8" in str(resolve_error("tiny", overrides={"resolution": 36}))


def test_invalid_nested_value_names_the_nested_key(tmp_path):
    path = write(tmp_path, "generate:\n  camera:\n    radius: -1\n")
    message = str(resolve_error("tiny", path))
    assert "'generate.camera.radius'" in message
    assert str(path) in message


def test_styles_flag_is_split_on_commas():
    config = resolve("tiny", overrides={"styles": "pixar, anime,voxel"})
    assert config.styles == ["pixar", "anime", "voxel"]


def test_resolved_config_is_frozen():
    config = resolve("tiny")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        config.num_images = 3
    assert config.num_images == load_preset("tiny")[SECTION]["num_images"]


@pytest.mark.parametrize("preset", PRESETS)
def test_save_resolved_round_trips(tmp_path, preset):
    config = resolve(preset, overrides={"camera": {"look_at": (0.0, 0.1, 0.2)}})
    path = tmp_path / "nested" / "dir" / "config.json"
    save_resolved(config, path)
    data = json.loads(path.read_text())
    assert data["num_images"] == config.num_images
    assert data["camera"]["look_at"] == [0.0, 0.1, 0.2]
    assert GenerateConfig.model_validate(data) == config


def test_deep_merge_merges_nested_and_leaves_inputs_untouched():
    base = {"a": 1, "n": {"x": 1, "y": 2}}
    override = {"n": {"y": 3}, "b": 2}
    merged = deep_merge(base, override)
    assert merged == {"a": 1, "b": 2, "n": {"x": 1, "y": 3}}
    assert base == {"a": 1, "n": {"x": 1, "y": 2}}


def test_presets_are_not_mutated_by_resolution():
    before = load_preset("tiny")
    resolve("tiny", overrides={"num_images": 99, "camera": {"radius": 3.1}})
    assert load_preset("tiny") == before


@pytest.mark.parametrize("text", ["generate: 5\n", "generate: [a, b]\n"])
def test_a_section_that_is_not_a_mapping_is_one_clear_error(tmp_path, text):
    with pytest.raises(AvatarPlatformError, match="section 'generate' .* holds a"):
        resolve(config_file=write(tmp_path, text))


def test_a_nested_cross_field_error_points_at_the_config_file_not_a_flag(tmp_path):
    path = write(tmp_path, "generate:\n  camera:\n    yaw_range: [90, -90]\n")
    message = resolve_error(config_file=path).message
    assert "'generate.camera'" in message and "low <= high" in message
    assert "--camera" not in message and "--config" in message


def test_the_mlflow_store_follows_the_platform_home_unless_the_user_names_one(tmp_path, monkeypatch):
    from avatar_platform.core.tracking import point_mlflow, tracking_uri

    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "a"))
    assert point_mlflow() == f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    # mlflow exported that URI to the environment; a new home must still win over it
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "b"))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri() == "http://mlflow.example:5000"


def test_a_bad_flag_value_names_the_flag_the_user_typed(cli):
    code, _, err = cli("train lora --images /nowhere --token t --gpu-wait -1 --dry-run")
    assert code == 2 and "'lora.gpu_wait_s'" in err and "pass a valid --gpu-wait," in err, err
