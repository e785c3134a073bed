"""`avatar-platform eval ablation`: the paper's discriminator ablation, measured against ground truth.

For every noise level × seed, one procedural dataset whose side/back views are misaligned with
their labels (`pose_noise`, `pose_noise_mode`); on it, one GAN per discriminator mode (the arms),
trained for the same steps from the same seed; each arm scored by `avatar-platform eval`'s metrics.

Layout of OUT:
- `ablation.json`: the plan (config) and the parent MLflow run; a re-run with another plan is refused;
- `data/n<noise>-s<seed>/`: the datasets (`generate`'s own resume finishes a cut one);
- `arms/<arm>/train/`: the arm's `train gan` output (`--resume`d when cut), `arms/<arm>/eval/`:
  its metrics.json and report.png, `arms/<arm>/result.json`: written last, it marks the arm done;
- `results.json`, `results.md`, `ablation.png`: the table and the plot, rewritten after every arm.

A finished arm is never re-run: re-running the same command continues where it stopped (a cut
dataset is finished, a cut training run resumes from its last checkpoint). The arms run one after
another, each on `gan.workers` Ray Train workers: on a cluster, more workers make each arm faster.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import atomic_write_bytes

EXPERIMENT = "ablation"
MODES = ("coarse-to-fine", "fine", "coarse", "camera")
PLAN_FILE = "ablation.json"
# (metric, better): what the table and the plot show, in this order, when the arms have it
METRICS = (
    ("geometry", "lower"),
    ("silhouette_iou", "higher"),
    ("view_accuracy", "higher"),
    ("view_yaw_error_deg", "lower"),
    ("fid", "lower"),
    ("kid", "lower"),
)


class AblationConfig(StrictConfig):
    """Section `ablation` of a preset: which arms, at what scale."""

    noise_levels: list[float] = Field(
        [0.0, 0.5], min_length=1, description="pose_noise of each dataset (0 = labels exact)"
    )
    noise_mode: Literal["jitter", "flip"] = Field(
        "jitter", description="how a noisy view is wrong (generate --pose-noise-mode)"
    )
    modes: list[Literal["coarse-to-fine", "fine", "coarse", "camera", "none"]] = Field(
        list(MODES), min_length=1, description="discriminator conditions compared"
    )
    seeds: list[int] = Field([0], min_length=1, description="dataset and training seeds")
    num_images: int | None = Field(None, gt=0, description="pictures per dataset (default: the preset's)")
    steps: int | None = Field(None, gt=0, description="training steps per arm (default: the preset's)")
    num_samples: int = Field(128, ge=2, description="renders and pictures for FID/KID per arm")

    @field_validator("noise_levels")
    @classmethod
    def _noise_in_range(cls, levels: list[float]) -> list[float]:
        for level in levels:
            if not 0.0 <= level <= 1.0:
                raise ValueError(f"noise level {level} is not a share of views: expected 0 to 1")
        return _unique(levels, "noise level")

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, modes: list[str]) -> list[str]:
        return _unique(modes, "mode")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        for seed in seeds:
            if seed < 0:
                raise ValueError(f"seed {seed} is negative")
        return _unique(seeds, "seed")

    def plan(self) -> dict:
        """What the results depend on: a re-run must match it."""
        return self.model_dump(mode="json")


def _unique(values: list, what: str) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"a {what} is listed twice in {values}")
    return values


@dataclass(frozen=True)
class Arm:
    noise: float
    mode: str
    seed: int

    @property
    def data_name(self) -> str:
        return f"n{self.noise:.2f}-s{self.seed}"

    @property
    def name(self) -> str:
        return f"n{self.noise:.2f}-{self.mode}-s{self.seed}"


def arms_of(config: AblationConfig) -> list[Arm]:
    """Seed by seed: a cut ablation has whole comparisons (every noise × mode) for its first seeds."""
    return [Arm(n, m, s) for s in config.seeds for n in config.noise_levels for m in config.modes]


@dataclass
class AblationSummary:
    out: Path
    finished: list[str]  # arms done before this call
    trained: list[str]  # arms this call trained and scored
    results: dict


ArmHook = Callable[[Arm, str], None]


class Ablation:
    """One ablation folder. `preset`/`config_file` give the generate and gan sections, as for
    `generate` and `train gan`; `hook(arm, stage)` is told each stage as it starts."""

    def __init__(
        self,
        config: AblationConfig,
        out: Path,
        preset: str,
        config_file: Path | None = None,
        *,
        ray_address: str | None = None,
        track: bool = True,
        hook: ArmHook | None = None,
    ):
        self.config, self.out, self.preset, self.config_file = config, Path(out), preset, config_file
        self.ray_address, self.track, self.hook = ray_address, track, hook

    # --- configs of the stages ------------------------------------------------------------
    def generate_config(self, arm: Arm):
        from avatar_platform.core.config import resolve_config
        from avatar_platform.pipelines.datagen.config import GenerateConfig

        overrides = {
            "num_images": self.config.num_images,
            "seed": arm.seed,
            "procedural": {"pose_noise": arm.noise, "pose_noise_mode": self.config.noise_mode},
        }
        config = resolve_config(GenerateConfig, "generate", self.preset, self.config_file, overrides)
        if config.backend != "procedural":
            raise AvatarPlatformError(
                f"the ablation needs the procedural backend (its misalignment is known), got '{config.backend}'",
                fix="set generate.backend: procedural in the config file",
            )
        return config

    def gan_config(self, arm: Arm):
        from avatar_platform.core.config import resolve_config
        from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

        overrides = {
            "steps": self.config.steps,
            "seed": arm.seed,
            "discriminator": {"conditioning": {"mode": arm.mode}},
            # an arm is judged once, at the end, by eval: no intermediate FID, no best-of pick
            "fid_every": 0,
            "keep_best": False,
        }
        return resolve_config(GanTrainingConfig, "gan", self.preset, self.config_file, overrides)

    # --- the run --------------------------------------------------------------------------
    def check(self) -> None:
        """Every arm's configs resolve, and OUT holds no other plan: before anything runs."""
        for arm in arms_of(self.config):
            self.generate_config(arm), self.gan_config(arm)
        plan_file = self.out / PLAN_FILE
        if plan_file.is_file():
            earlier = json.loads(plan_file.read_text())
            if earlier.get("plan") != self.config.plan() or earlier.get("preset") != self.preset:
                raise AvatarPlatformError(
                    f"'{self.out}' holds an ablation with another plan (preset "
                    f"'{earlier.get('preset')}', {json.dumps(earlier.get('plan'))})",
                    fix="re-run with the same options to continue it, or choose another --out",
                )

    def run(self) -> AblationSummary:
        from avatar_platform.core.paths import ensure_writable_dir
        from avatar_platform.core.tracking import ended_on_error

        self.check()
        ensure_writable_dir(self.out)
        parent = self._parent_run()
        arms = arms_of(self.config)
        finished = [arm.name for arm in arms if self.result_file(arm).is_file()]
        todo = [arm for arm in arms if arm.name not in finished]
        trained: list[str] = []
        with ended_on_error(parent):  # a stopped ablation's run says KILLED, a failed one FAILED
            datasets: dict[str, Arm] = {}
            for arm in todo:
                datasets.setdefault(arm.data_name, arm)
            for arm in datasets.values():  # datasets first, one at a time
                if not (self.data_dir(arm) / "dataset.json").is_file():
                    self._stage(arm, "generate")
                self.dataset(arm)  # a complete one is only checked against its config
            for arm in todo:  # one at a time: a Ctrl-C stops the arm that runs, resumably
                self.run_arm(arm, parent)
                trained.append(arm.name)
            results = self.write_results()
            if parent and len(results["arms"]) == len(arms):
                self._end_run(parent)
        return AblationSummary(self.out, finished, trained, results)

    def _stage(self, arm: Arm, stage: str) -> None:
        if self.hook is not None:
            self.hook(arm, stage)

    def data_dir(self, arm: Arm) -> Path:
        return self.out / "data" / arm.data_name

    def arm_dir(self, arm: Arm) -> Path:
        return self.out / "arms" / arm.name

    def result_file(self, arm: Arm) -> Path:
        return self.arm_dir(arm) / "result.json"

    def dataset(self, arm: Arm) -> Path:
        from avatar_platform.pipelines.datagen.job import run_generate

        run_generate(self.generate_config(arm), self.data_dir(arm), self.ray_address, track=self.track)
        return self.data_dir(arm)

    def run_arm(self, arm: Arm, parent: str | None) -> None:
        """Train the arm (or finish its cut run), score it, and mark it done."""
        from avatar_platform.pipelines.evaluation.report import run_eval
        from avatar_platform.pipelines.training.gan.job import run_train_gan
        from avatar_platform.pipelines.training.ray_job import RUN_NAME

        train = self.arm_dir(arm) / "train"
        if not (train / "model").is_dir():
            self._stage(arm, "train")
            resume = (train / "ray" / RUN_NAME).exists()
            tags = {"ablation.arm": arm.name, **({"ablation.run": parent} if parent else {})}
            run_train_gan(
                self.gan_config(arm),
                self.data_dir(arm),
                train,
                resume=resume,
                ray_address=self.ray_address,
                track=self.track,
                extra_tags=tags,
            )
        self._stage(arm, "eval")
        metrics = run_eval(
            str(train), self.data_dir(arm), self.arm_dir(arm) / "eval", self.config.num_samples
        )
        result = {
            "arm": arm.name,
            "noise": arm.noise,
            "mode": arm.mode,
            "seed": arm.seed,
            "metrics": {k: v for k, v in metrics.items() if _is_number(v)},
            "absent": metrics.get("absent", {}),
            "features": metrics.get("features"),
        }
        if parent and self.track:
            result["mlflow_run"] = self._child_run(parent, arm, result)
        atomic_write_bytes(self.result_file(arm), (json.dumps(result, indent=2) + "\n").encode())
        self.write_results()  # the table after every arm: a long ablation shows its progress

    # --- results --------------------------------------------------------------------------
    def write_results(self) -> dict:
        arms = arms_of(self.config)
        done = [json.loads(self.result_file(a).read_text()) for a in arms if self.result_file(a).is_file()]
        results = {
            "preset": self.preset,
            "plan": self.config.plan(),
            "arms": done,
            "pending": [a.name for a in arms if not self.result_file(a).is_file()],
            "summary": summarise(done),
        }
        atomic_write_bytes(self.out / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        atomic_write_bytes(self.out / "results.md", markdown_table(results).encode())
        if done:
            plot(results, self.out / "ablation.png")
        return results

    # --- MLflow ---------------------------------------------------------------------------
    def _parent_run(self) -> str | None:
        plan_file = self.out / PLAN_FILE
        earlier = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
        run_id = earlier.get("mlflow_run")
        if self.track and run_id is None:
            from avatar_platform.core.tracking import configure_mlflow, flatten_params

            mlflow = configure_mlflow(EXPERIMENT)
            client = mlflow.MlflowClient()
            experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
            run = client.create_run(
                experiment, run_name=f"ablation-{self.out.name}", tags={"output": str(self.out)}
            )
            run_id = run.info.run_id
            for key, value in flatten_params({"preset": self.preset, **self.config.plan()}).items():
                client.log_param(run_id, key, value)
        elif self.track:
            from avatar_platform.core.tracking import reopen_run

            reopen_run(run_id)
        record = {"preset": self.preset, "plan": self.config.plan(), "mlflow_run": run_id}
        atomic_write_bytes(plan_file, (json.dumps(record, indent=2) + "\n").encode())
        return run_id

    def _child_run(self, parent: str, arm: Arm, result: dict) -> str:
        from avatar_platform.core.tracking import configure_mlflow

        mlflow = configure_mlflow(EXPERIMENT)
        client = mlflow.MlflowClient()
        experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
        run = client.create_run(
            experiment, run_name=arm.name, tags={"mlflow.parentRunId": parent, "ablation.arm": arm.name}
        )
        for key in ("noise", "mode", "seed"):
            client.log_param(run.info.run_id, key, result[key])
        for key, value in result["metrics"].items():
            client.log_metric(run.info.run_id, key, float(value))
        client.log_artifacts(run.info.run_id, str(self.arm_dir(arm) / "eval"), "eval")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    def _end_run(self, run_id: str) -> None:
        from avatar_platform.core.tracking import configure_mlflow

        mlflow = configure_mlflow(EXPERIMENT)
        client = mlflow.MlflowClient()
        for name in ("results.json", "results.md", "ablation.png"):
            if (self.out / name).is_file():
                client.log_artifact(run_id, str(self.out / name))
        client.set_terminated(run_id)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summarise(done: list[dict]) -> list[dict]:
    """Per (noise, mode): mean, sample standard deviation and count over seeds of each metric."""
    groups: dict[tuple, list[dict]] = {}
    for result in done:
        groups.setdefault((result["noise"], result["mode"]), []).append(result)
    rows = []
    for (noise, mode), results in sorted(groups.items(), key=lambda kv: (kv[0][0], _mode_order(kv[0][1]))):
        row = {"noise": noise, "mode": mode, "seeds": sorted(r["seed"] for r in results)}
        for metric, _ in METRICS:
            values = [r["metrics"][metric] for r in results if metric in r["metrics"]]
            if values:
                mean = sum(values) / len(values)
                std = (
                    math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                    if len(values) > 1
                    else 0.0
                )
                row[metric] = {"mean": mean, "std": std, "n": len(values)}
        rows.append(row)
    return rows


def _mode_order(mode: str) -> int:
    order = (*MODES, "none")
    return order.index(mode) if mode in order else len(order)


def markdown_table(results: dict) -> str:
    rows = results["summary"]
    shown = [(m, b) for m, b in METRICS if any(m in row for row in rows)]
    head = (
        "| noise | D condition | seeds | "
        + " | ".join(f"{m} ({'↓' if b == 'lower' else '↑'})" for m, b in shown)
        + " |"
    )
    lines = [
        f"# Discriminator ablation (preset {results['preset']})",
        "",
        f"Plan: {json.dumps(results['plan'])}",
        "",
        "Mean ± standard deviation over seeds; the best mean per noise level in bold.",
        "",
        head,
        "|" + "---|" * (3 + len(shown)),
    ]
    best: dict[tuple, float] = {}
    for row in rows:
        for metric, better in shown:
            if metric in row:
                key, value = (row["noise"], metric), row[metric]["mean"]
                if key not in best or (value < best[key] if better == "lower" else value > best[key]):
                    best[key] = value
    for row in rows:
        cells = []
        for metric, _ in shown:
            if metric not in row:
                cells.append("—")
                continue
            stat = row[metric]
            text = f"{stat['mean']:.4g} ± {stat['std']:.2g}" if stat["n"] > 1 else f"{stat['mean']:.4g}"
            cells.append(
                f"**{text}**" if best[(row["noise"], metric)] == stat["mean"] and len(rows) > 1 else text
            )
        seeds = ",".join(str(s) for s in row["seeds"])
        lines.append(f"| {row['noise']:g} | {row['mode']} | {seeds} | " + " | ".join(cells) + " |")
    if results["pending"]:
        lines += ["", f"Pending arms ({len(results['pending'])}): {', '.join(results['pending'])}"]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path:
    """One panel per metric: each arm's seeds as dots and their mean as a bar, grouped by noise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = results["arms"]
    shown = [(m, b) for m, b in METRICS if any(m in r["metrics"] for r in done)]
    noises = sorted({r["noise"] for r in done})
    modes = sorted({r["mode"] for r in done}, key=_mode_order)
    colours = plt.get_cmap("tab10")
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    width = 0.8 / len(modes)
    for ax, (metric, better) in zip(axes.flat, shown, strict=False):
        for j, mode in enumerate(modes):
            for i, noise in enumerate(noises):
                values = [
                    r["metrics"][metric]
                    for r in done
                    if r["noise"] == noise and r["mode"] == mode and metric in r["metrics"]
                ]
                if not values:
                    continue
                x = i + (j - (len(modes) - 1) / 2) * width
                ax.bar(
                    x,
                    sum(values) / len(values),
                    width * 0.9,
                    color=colours(j),
                    alpha=0.45,
                    label=mode if i == 0 else None,
                )
                ax.scatter([x] * len(values), values, color=colours(j), s=12, zorder=3)
        ax.set_xticks(range(len(noises)), [f"noise {n:g}" for n in noises])
        ax.set_title(f"{metric} ({'lower' if better == 'lower' else 'higher'} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"Discriminator ablation, preset {results['preset']}: bars = mean over seeds, dots = seeds",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
