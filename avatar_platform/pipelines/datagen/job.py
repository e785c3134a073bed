"""`avatar-platform generate`: plan → Ray Data pipeline → Parquet parts → dataset.json (last).

Exactly-once resume: the spec is planned deterministically and written first; each part file is
written atomically and named by the rows it holds; a re-run reads which sample_ids sit in complete
parts and generates only the rest. `dataset.json` is written last, so a folder without it is never
mistaken for a complete dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import atomic_write_bytes, ensure_writable_dir, removed_if_failed
from avatar_platform.core.progress import progress_bar
from avatar_platform.core.ray_runtime import (
    check_ray_address,
    gpus_to_use,
    require_resources,
    require_shared_folder,
)
from avatar_platform.formats.dataset_card import write_card
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.datagen.stages import (
    ImageGenerator,
    completed_parts,
    make_backend,
    pid_alive,
    render_condition_batch,
    write_part,
)

EXPERIMENT = "generate"
WORK_DIR = "_work"
DATA_DIR = "data"


@dataclass
class GenerateSummary:
    out: Path
    images: int
    generated_now: int
    seconds: float
    resumed_from: int
    preview: Path | None = None
    run_id: str | None = None  # the MLflow run of this call (none when nothing was generated)

    @property
    def images_per_second(self) -> float:
        return self.generated_now / max(self.seconds, 1e-9)


def config_hash(config: GenerateConfig) -> str:
    # left out: how the job runs on GPUs (not what it makes), and the default pose-noise mode,
    # so that datasets planned before these settings keep their hash
    exclude: dict = {"gpus": True, "gpu_wait_s": True}
    if config.procedural.pose_noise_mode == "jitter":
        exclude["procedural"] = {"pose_noise_mode": True}
    text = config.model_dump_json(exclude=exclude)
    if config.backend == "controlnet" and config.controlnet.lora:
        from avatar_platform.core.digest import path_sha256
        from avatar_platform.core.hub import model_source
        from avatar_platform.formats.lora_folder import lora_weights

        # a retrained LoRA in the same folder makes other images: not the same dataset
        weights = lora_weights(model_source(config.controlnet.lora, "LoRA weights"))
        text += path_sha256(weights) if weights else ""
    if config.template_mesh:
        from avatar_platform.pipelines.poses.template import template_digests

        # an edited mesh or landmarks file makes other images: not the same dataset
        digests = template_digests(config.template_mesh, config.template_landmarks)
        text += json.dumps(digests, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_inputs(config: GenerateConfig) -> None:
    """Fail before any work on what can be known up front (styles, template, model paths)."""
    if config.gpus == "required" and config.backend != "controlnet":
        raise AvatarPlatformError(
            f"gpus: required, but the {config.backend} backend renders on CPUs",
            expected="--gpus required with --backend controlnet",
            fix="use --backend controlnet, or --gpus auto",
        )
    from avatar_platform.pipelines.datagen.controlnet_backend import controlnet_identity
    from avatar_platform.pipelines.poses.template import load_user_template
    from avatar_platform.pipelines.prompts.prompts import resolve_styles

    resolve_styles(config.styles)
    if config.template_mesh:
        load_user_template(
            config.template_mesh, config.template_landmarks, config.template_normalize, config.camera
        )
    if config.backend == "controlnet":
        controlnet_identity(config.controlnet)  # raises for paths that do not exist
        if config.controlnet.matting_model:
            from avatar_platform.pipelines.datagen.matting import check_matting_model

            check_matting_model(config.controlnet.matting_model)  # a non-model is refused here
    elif config.controlnet.matting_model:
        raise AvatarPlatformError(
            f"a matting model ('{config.controlnet.matting_model}') refines the masks of the "
            f"controlnet backend, and the backend is '{config.backend}' (its masks are exact)",
            fix="add --backend controlnet, or drop --matting-model",
        )
    elif config.controlnet.lora:
        raise AvatarPlatformError(
            f"a LoRA ('{config.controlnet.lora}') adapts Stable Diffusion, and the backend is '{config.backend}'",
            fix="add --backend controlnet, or drop --lora",
        )


class _OutputLock:
    """One driver per output folder; a lock left by a killed driver is taken over."""

    def __init__(self, work: Path):
        self.path = work / "lock"

    def __enter__(self):
        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and pid_alive(pid):
                raise AvatarPlatformError(
                    f"another generate (pid {pid}) is writing to '{self.path.parent.parent}'",
                    fix="wait for it, stop it, or choose another --out",
                )
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _prepare(config: GenerateConfig, out: Path) -> tuple[pa.Table, Path]:
    """Write or re-read the job spec; refuse to mix two configs in one folder."""
    work = out / WORK_DIR
    job_file, spec_file = work / "job.json", work / "spec.parquet"
    digest = config_hash(config)
    if job_file.exists() and spec_file.exists():
        previous = json.loads(job_file.read_text())
        if previous.get("config_hash") != digest:
            raise AvatarPlatformError(
                f"'{out}' holds an unfinished dataset made with another config",
                expected="the same flags and config as the interrupted run, to resume it",
                fix="re-run the original command, or choose another --out (or delete the folder)",
            )
        return pq.read_table(spec_file), work
    work.mkdir(parents=True, exist_ok=True)
    spec = plan(config)
    sink = pa.BufferOutputStream()
    pq.write_table(spec, sink)
    atomic_write_bytes(spec_file, sink.getvalue().to_pybytes())
    job = {"config_hash": digest, "config": config.model_dump(mode="json")}
    atomic_write_bytes(job_file, json.dumps(job, indent=2).encode())
    return spec, work


def _resources(config: GenerateConfig) -> dict:
    """Ray resources of one image actor: a GPU where the cluster has them and the backend uses
    them (`gpus`), else a CPU."""
    per_actor = {"num_cpus": 1}
    needed = config.workers * config.gpus_per_worker
    what = f"{config.workers} image actors"
    if config.backend == "controlnet" and gpus_to_use(config.gpus, needed, config.gpu_wait_s, what):
        per_actor["num_gpus"] = config.gpus_per_worker
    require_resources(config.workers, per_actor)
    return per_actor


def run_pipeline(config: GenerateConfig, remaining: pa.Table, data_dir: Path, progress) -> None:
    """The Ray Data pipeline over the rows still to make."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    config_json = config.model_dump_json()
    step = config.render_batch_size
    blocks = [remaining.slice(i, step) for i in range(0, remaining.num_rows, step)]
    cores = os.cpu_count() or 1
    ds = (
        ray.data.from_arrow(blocks)
        .map_batches(
            render_condition_batch, fn_kwargs={"config_json": config_json}, batch_size=step, num_cpus=1
        )
        .map_batches(
            ImageGenerator,
            fn_constructor_kwargs={
                "config_json": config_json,
                "cpu_threads": max(cores // config.workers, 1),
            },
            batch_size=config.controlnet.batch_size if config.backend == "controlnet" else step,
            compute=ActorPoolStrategy(size=config.workers),
            **_resources(config),
        )
        .map_batches(
            write_part,
            fn_kwargs={"data_dir": str(data_dir), "config_json": config_json},
            batch_size=config.shard_size,
            num_cpus=0.5,
        )
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        progress.advance(len(batch["sample_id"]))


def _deduplicate(data_dir: Path, parts: dict[str, list[str]]) -> dict[str, list[str]]:
    """Drop rows that a second part repeats (a task of a killed driver finishing late).

    Backends are deterministic per seed, so the repeated rows are the same images; the newer
    file is rewritten without them.
    """
    seen: set[str] = set()
    for name in sorted(parts, key=lambda n: (data_dir / n).stat().st_mtime):
        ids = parts[name]
        if not seen.intersection(ids):
            seen.update(ids)
            continue
        table = pq.read_table(data_dir / name)
        keep = pc.invert(pc.is_in(table["sample_id"], pa.array(sorted(seen), pa.string())))
        table = table.filter(keep)
        if table.num_rows == 0:
            (data_dir / name).unlink()
            del parts[name]
            continue
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        atomic_write_bytes(data_dir / name, sink.getvalue().to_pybytes())
        parts[name] = table["sample_id"].to_pylist()
        seen.update(parts[name])
    return parts


def run_generate(
    config: GenerateConfig,
    out: Path,
    ray_address: str | None = None,
    *,
    track: bool = True,
    preview: bool = True,
    announce: Callable[[str], None] | None = None,
) -> GenerateSummary:
    """Generate (or finish) the dataset of `config` in `out`, with `config.resolved.json` and,
    when asked, `preview.png` and an MLflow run in the experiment `generate` (config, throughput,
    card and preview; none when the dataset was already complete). `announce` is told what is
    about to be made once the inputs and the cluster are checked."""
    from dataclasses import replace

    from avatar_platform.core.config import save_resolved
    from avatar_platform.formats.dataset_card import write_preview

    summary = _generate(config, out, ray_address, announce)
    save_resolved(config, summary.out / "config.resolved.json")
    if preview:
        summary = replace(summary, preview=write_preview(summary.out))
    if track and summary.generated_now:
        summary = replace(summary, run_id=record_run(config, summary))
    return summary


def record_run(config: GenerateConfig, summary: GenerateSummary) -> str:
    """Log a generate run's config, throughput and card (and preview) to MLflow; its run id."""
    from avatar_platform.core.tracking import configure_mlflow, flatten_params

    mlflow = configure_mlflow(EXPERIMENT)
    with mlflow.start_run(run_name=f"generate-{summary.out.name}") as run:
        mlflow.log_params(flatten_params(config.model_dump(mode="json")))
        mlflow.log_metrics(
            {
                "images": summary.images,
                "generated_now": summary.generated_now,
                "images_per_second": summary.images_per_second,
            }
        )
        mlflow.set_tag("dataset", str(summary.out))
        mlflow.log_artifact(str(summary.out / "dataset.json"))
        if summary.preview:
            mlflow.log_artifact(str(summary.preview))
        return run.info.run_id


def _generate(config: GenerateConfig, out: Path, ray_address: str | None, announce) -> GenerateSummary:
    check_inputs(config)
    check_ray_address(ray_address)
    on_cluster = bool(ray_address or os.environ.get("RAY_ADDRESS"))
    if on_cluster:
        from avatar_platform.core.ray_runtime import init_ray

        # a cluster is joined before anything is written: one that times out leaves no _work/
        init_ray(ray_address, min_cpus=config.workers + 2)
    with removed_if_failed(out):
        out = ensure_writable_dir(out)
        if on_cluster:  # the image actors' nodes write the parts
            require_shared_folder(out)
    if announce is not None:
        announce(f"generating {config.num_images} images ({config.backend}, {config.resolution}²) into {out}")
    card = out / "dataset.json"
    if card.exists():
        existing = json.loads(card.read_text())
        if existing.get("config_hash") == config_hash(config):
            return GenerateSummary(out, existing["num_images"], 0, 0.0, existing["num_images"])
        raise AvatarPlatformError(
            f"'{out}' already holds a complete dataset made with another config",
            fix="choose another --out, or delete the folder to regenerate",
        )
    spec, work = _prepare(config, out)
    data_dir = out / DATA_DIR
    data_dir.mkdir(exist_ok=True)
    with _OutputLock(work):
        done = {sid for ids in completed_parts(data_dir).values() for sid in ids}
        remaining = spec.filter(pc.invert(pc.is_in(spec["sample_id"], pa.array(sorted(done), pa.string()))))
        start = time.perf_counter()
        if remaining.num_rows:
            from avatar_platform.core.ray_runtime import init_ray

            init_ray(ray_address, min_cpus=config.workers + 2)
            with progress_bar("generating", spec.num_rows, completed=len(done)) as bar:
                run_pipeline(config, remaining, data_dir, bar)
        seconds = time.perf_counter() - start
        parts = _deduplicate(data_dir, completed_parts(data_dir))
        produced = {sid for ids in parts.values() for sid in ids}
        planned = set(spec["sample_id"].to_pylist())
        if produced != planned:
            missing = len(planned - produced)
            raise AvatarPlatformError(
                f"the dataset in '{out}' is incomplete ({missing} of {len(planned)} images missing)",
                fix="re-run the same command to generate the missing images",
            )
        write_card(
            out,
            config,
            config_hash(config),
            sorted(parts),
            make_backend_identity(config),
            masks=mask_identity(config),
        )
        shutil.rmtree(work, ignore_errors=True)
    return GenerateSummary(out, spec.num_rows, remaining.num_rows, seconds, len(done))


def make_backend_identity(config: GenerateConfig) -> dict:
    """What made the images, for the card (for controlnet without loading the weights)."""
    if config.backend == "procedural":
        return make_backend(config).identity()
    from avatar_platform.pipelines.datagen.controlnet_backend import controlnet_identity

    return controlnet_identity(config.controlnet)


def mask_identity(config: GenerateConfig) -> dict:
    """The card's `masks`: where the `mask` column comes from and how it is stored."""
    out = {"column": "mask", "format": "PNG, mode L, the image's size; 255 = avatar, 0 = background"}
    if config.backend == "procedural":
        from avatar_platform.pipelines.datagen.procedural_backend import MASK_SOURCE

        return {"source": MASK_SOURCE, **out}
    from avatar_platform.core.hub import model_source
    from avatar_platform.pipelines.datagen.controlnet_backend import mask_source, silhouette_dilation

    out = {
        "source": mask_source(config.controlnet),
        **out,
        "dilation_px": silhouette_dilation(config.resolution),
    }
    if config.controlnet.matting_model:
        out["model"] = model_source(config.controlnet.matting_model, "matting model")
    return out
