"""The cluster manifests, the Dockerfile and docs/cluster.md, checked without starting Ray.

The `ray up` config is validated the way `ray up` validates it; the KubeRay manifests for their
kinds, GPUs, image and volume; the Serve config against Ray Serve's own schema and our ServeConfig;
and every `avatar-platform` command in the RayJob entrypoints and in the doc's code blocks against
the CLI itself (command names and option names), so the walk-through cannot drift from the CLI.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "avatar_platform" / "cluster" / "manifests"
DOC = ROOT / "docs" / "cluster.md"
DOCKERFILE = ROOT / "Dockerfile"
SERVE_IMPORT_PATH = "avatar_platform.serve.app:build_app"
KUBERAY_KINDS = {
    "raycluster.yaml": "RayCluster",
    "rayjob-generate.yaml": "RayJob",
    "rayjob-train.yaml": "RayJob",
    "rayservice.yaml": "RayService",
}
# instance type → V100s, as the launcher config declares them
V100_INSTANCES = {"p3.2xlarge": 1, "p3.16xlarge": 8, "p3dn.24xlarge": 8}
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ">", ">>", "<"}


def _documents(name: str) -> list[dict]:
    with open(MANIFESTS / name) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def _document(name: str) -> dict:
    (doc,) = _documents(name)
    return doc


def _cluster_specs() -> dict[str, dict]:
    """Every RayCluster spec of the KubeRay manifests, by file."""
    return {
        "raycluster.yaml": _document("raycluster.yaml")["spec"],
        "rayservice.yaml": _document("rayservice.yaml")["spec"]["rayClusterConfig"],
    }


def _pod_specs(spec: dict) -> list[tuple[str, dict]]:
    """(group name, pod spec) of the head and of each worker group of a RayCluster spec."""
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return pods


# --- commands in shell text -------------------------------------------------------------------


def _invocations(shell: str) -> list[list[str]]:
    """The words after `avatar-platform` of each command in `shell` that runs it.

    Only a word in command position counts (first of a pipeline part, after `NAME=value`
    assignments), so `--repository-name avatar-platform` is not a command.
    """
    found = []
    for line in shell.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token not in SHELL_SEPARATORS:
                segment.append(token)
                continue
            words = [w for w in segment if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w)]
            if words and Path(words[0]).name == "avatar-platform":
                found.append(words[1:])
            segment = []
    return found


def _doc_code_blocks() -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def _entrypoints() -> dict[str, str]:
    return {name: _document(name)["spec"]["entrypoint"] for name in KUBERAY_KINDS if "rayjob" in name}


def _all_invocations() -> list[tuple[str, list[str]]]:
    cases = [
        (name, words) for name, entrypoint in _entrypoints().items() for words in _invocations(entrypoint)
    ]
    cases += [("docs/cluster.md", words) for block in _doc_code_blocks() for words in _invocations(block)]
    return cases


def _cli():
    import typer

    from avatar_platform.cli.app import app

    return typer.main.get_command(app)


def _command_errors(words: list[str]) -> list[str]:
    """What is wrong with `avatar-platform WORDS`: unknown commands or options (empty: nothing)."""

    def is_group(command) -> bool:  # duck-typed: typer brings its own copy of click
        return isinstance(getattr(command, "commands", None), dict)

    command, path, rest = _cli(), ["avatar-platform"], list(words)
    while is_group(command) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            known = ", ".join(sorted(command.commands))
            return [f"`{' '.join(path)}` has no command '{name}' (it has: {known})"]
        command, path = command.commands[name], [*path, name]
    if is_group(command):
        return [f"`{' '.join(path)}` is a group: name one of its commands"]
    nested: list[str] | None = None
    if "--" in rest:  # `cluster submit ... -- <an avatar-platform command>`
        at = rest.index("--")
        rest, nested = rest[:at], rest[at + 1 :]
    options = {"--help"}
    for param in command.params:
        options.update(param.opts + param.secondary_opts)
    errors = [
        f"`{' '.join(path)}` has no option {word.split('=')[0]}"
        for word in rest
        if word.startswith("-") and not re.fullmatch(r"-\d[\d.]*", word) and word.split("=")[0] not in options
    ]
    if nested is not None:
        errors += _command_errors(nested) if nested else [f"`{' '.join(path)} --` names no command"]
    return errors


# --- every YAML --------------------------------------------------------------------------------


def test_the_manifest_folder_holds_the_expected_files_and_each_parses():
    names = {path.name for path in MANIFESTS.glob("*.yaml")}
    assert names >= {"aws-v100.yaml", "storage.yaml", *KUBERAY_KINDS}
    for name in names:
        docs = _documents(name)
        assert docs and all(isinstance(doc, dict) for doc in docs), name


def test_pyproject_ships_the_manifests_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["tool"]["setuptools"]["package-data"]["avatar_platform.cluster"] == ["manifests/*.yaml"]


def test_every_manifest_names_one_image_and_one_tracking_server_the_doc_replaces():
    images, tracking = set(), set()
    launcher = _document("aws-v100.yaml")
    images.add(launcher["docker"]["image"])
    tracking.update(
        option.split("=", 1)[1]
        for option in launcher["docker"]["run_options"]
        if option.startswith("-e MLFLOW_TRACKING_URI=")
    )
    for spec in _cluster_specs().values():
        for _, pod in _pod_specs(spec):
            for container in pod["containers"]:
                images.add(container["image"])
                env = {e["name"]: e for e in container["env"]}
                tracking.add(env["MLFLOW_TRACKING_URI"]["value"])
                assert env["AVATAR_HOME"]["value"].startswith("/data/")
    assert len(images) == 1 and len(tracking) == 1, (images, tracking)
    doc = DOC.read_text()
    assert images.pop() in doc  # the doc's sed line replaces exactly this string


# --- the cluster launcher (`ray up`) -----------------------------------------------------------


def test_the_launcher_config_passes_rays_own_validation():
    """What `ray up` does first: fill in the AWS defaults, then validate (jsonschema + checks)."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _document("aws-v100.yaml")
    validate_config(copy.deepcopy(config))
    validate_config(prepare_config(copy.deepcopy(config)))


def test_the_launcher_config_has_a_cpu_head_and_v100_workers():
    config = _document("aws-v100.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU") == 0
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    instances = {t["node_config"]["InstanceType"] for t in workers.values()}
    assert instances == set(V100_INSTANCES)
    for name, node_type in workers.items():
        gpus = V100_INSTANCES[node_type["node_config"]["InstanceType"]]
        assert node_type["resources"]["GPU"] == gpus, name
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"], name
    # the 8-GPU node that `generate` uses is kept up: the stages size themselves from present GPUs
    assert types["gpu-v100-16gb-x8"]["min_workers"] == 1
    assert config["provider"]["type"] == "aws"
    assert any("RAY_AUTH_MODE=token" in option for option in config["docker"]["run_options"])


# --- KubeRay ---------------------------------------------------------------------------------


def test_kuberay_manifests_have_their_kind_and_the_pinned_ray_version():
    import ray

    for name, kind in KUBERAY_KINDS.items():
        doc = _document(name)
        assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", kind), name
    for name, spec in _cluster_specs().items():
        assert spec["rayVersion"] == ray.__version__, name
        assert spec["authOptions"]["mode"] == "token", name


def test_gpu_worker_groups_ask_for_v100s_and_the_head_for_none():
    for name, spec in _cluster_specs().items():
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", name
        for group, pod in _pod_specs(spec):
            (container,) = pod["containers"]
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            if group == "head":
                assert "nvidia.com/gpu" not in limits, name
                continue
            assert int(limits["nvidia.com/gpu"]) >= 1, (name, group)
            assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"], (name, group)
            assert pod["nodeSelector"]["nvidia.com/gpu.product"].startswith("Tesla-V100"), group


def test_every_ray_pod_mounts_the_shared_volume_of_storage_yaml():
    (claim,) = _documents("storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, spec in _cluster_specs().items():
        for group, pod in _pod_specs(spec):
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            claim_of_data = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
            assert claim_of_data == claim["metadata"]["name"], (name, group)


def test_rayjobs_run_on_the_raycluster():
    cluster = _document("raycluster.yaml")["metadata"]["name"]
    for name in _entrypoints():
        assert _document(name)["spec"]["clusterSelector"] == {"ray.io/cluster": cluster}, name


# --- commands --------------------------------------------------------------------------------


def test_the_stages_are_all_named_in_the_entrypoints_and_the_doc():
    """Guards the parser below: it must find the commands the walk-through is made of."""
    named = {" ".join(w for w in words[:2] if not w.startswith("-")) for _, words in _all_invocations()}
    for stage in ("generate", "train gan", "train diffusion", "registry register", "registry promote"):
        assert any(n == stage or n.startswith(f"{stage} ") for n in named), stage
    entrypoint_words = [words for _, e in _entrypoints().items() for words in _invocations(e)]
    assert [w[:2] for w in entrypoint_words] == [
        ["generate", "--preset"],
        ["train", "gan"],
        ["train", "diffusion"],
        ["registry", "register"],
    ]


@pytest.mark.parametrize(
    "source,words",
    _all_invocations(),
    ids=[f"{source}:{' '.join(words[:6])}" for source, words in _all_invocations()],
)
def test_each_avatar_platform_command_exists(source, words):
    assert not _command_errors(words), f"{source}: avatar-platform {' '.join(words)}"


def test_the_command_check_catches_what_it_should():
    assert not _command_errors(["train", "gan", "--data", "x", "--preset", "paper"])
    assert _command_errors(["train", "gann"])
    assert _command_errors(["train"])
    assert _command_errors(["generate", "--num-imgs", "3"])
    assert _invocations("aws ecr create-repository --repository-name avatar-platform") == []
    assert _invocations("X=1 .venv/bin/avatar-platform styles && avatar-platform dataset info d") == [
        ["styles"],
        ["dataset", "info", "d"],
    ]


# --- serving -----------------------------------------------------------------------------------


def _serve_application() -> dict:
    config = yaml.safe_load(_document("rayservice.yaml")["spec"]["serveConfigV2"])
    (application,) = config["applications"]
    return application


def test_the_rayservice_holds_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(_document("rayservice.yaml")["spec"]["serveConfigV2"]))
    application = _serve_application()
    assert application["import_path"] == SERVE_IMPORT_PATH
    assert application["args"]["model"] == "models:/styleavatar3d@champion"
    assert application["args"]["num_gpus"] == 1


def test_the_serve_args_are_serve_config_fields():
    from avatar_platform.serve.config import ServeConfig

    args = _serve_application()["args"]
    assert set(args) <= set(ServeConfig.model_fields)
    ServeConfig(**args)


def test_the_serve_import_path_names_an_application_builder():
    module, attr = _serve_application()["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_the_api_key_comes_from_an_optional_secret():
    spec = _document("rayservice.yaml")["spec"]["rayClusterConfig"]
    for group, pod in _pod_specs(spec):
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        secret = env["AVATAR_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert secret["optional"] is True, group


# --- the image ---------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    instructions, text = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not text and (not line.strip() or line.lstrip().startswith("#")):
            continue
        text += line.rstrip().removesuffix("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            instruction, _, arguments = text.strip().partition(" ")
            instructions.append((instruction.upper(), arguments))
            text = ""
    return instructions


def test_the_dockerfile_copies_files_that_exist_and_dockerignore_keeps():
    ignored = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith(("#", "!"))
    ]
    copies = [args.split() for name, args in _dockerfile_instructions() if name == "COPY"]
    assert copies
    for words in copies:
        sources = [w for w in words[:-1] if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            for pattern in ignored:
                assert not fnmatch.fnmatch(source, pattern.removeprefix("**/")), (source, pattern)


def test_the_image_installs_with_the_constraints_and_does_not_run_as_root():
    instructions = _dockerfile_instructions()
    installs = [args for name, args in instructions if name == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        for command in args.split("&&"):
            if "pip install" in command:
                assert "-c constraints.txt" in command, command
    users = [args.strip() for name, args in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    # `ray up` starts the container with `bash` and KubeRay with `ray start`: no ENTRYPOINT
    assert "ENTRYPOINT" not in {name for name, _ in instructions}
