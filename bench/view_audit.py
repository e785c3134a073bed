"""How well does a view classifier judge views, and does it flag flipped ones? (issue #15)

Scores one or more view classifiers on a clean procedural dataset and on one made with
`--pose-noise P --pose-noise-mode flip`, whose flipped views are rendered from the mirrored yaw
(180° − yaw) while their labels keep the requested camera. A picture counts as flipped when its
true yaw differs from its label by more than a degree; a flip moves a view by |180° − 2·yaw|, so
the flips that moved it 90° or more (a back shown as a front) are scored on their own too.

For each classifier and each group of pictures it prints one JSON line:
- `true_view_accuracy`: the view bin it sees, against the picture's true view;
- `disagrees_with_label`: the share it sees as another bin than the label's (what `dataset audit`
  counts);
- `yaw_error_to_label_deg`: the mean yaw error to the label;
- `over_90`, `over_120`: the share whose yaw error to the label is over 90° / 120° (a flag at
  that threshold: on flipped views the share caught, on clean views the false alarms).

    python bench/view_audit.py --clean CLEAN_DATA --flip FLIP_DATA \
        --classifiers shipped=avatar_platform/pipelines/evaluation/view_classifier_model,new=DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from avatar_platform.pipelines.evaluation.view_classifier import dataset_rows, load, yaw_error
from avatar_platform.pipelines.poses.view_bins import coarse_view_bin


def scores(found: dict, label_yaw: np.ndarray, true_yaw: np.ndarray) -> dict:
    """The numbers of the module docstring for one group of pictures."""
    to_label = yaw_error(found["yaw"], label_yaw)
    return {
        "pictures": int(len(label_yaw)),
        "true_view_accuracy": round(float(np.mean(found["bin"] == coarse_view_bin(true_yaw))), 3),
        "disagrees_with_label": round(float(np.mean(found["bin"] != coarse_view_bin(label_yaw))), 3),
        "yaw_error_to_label_deg": round(float(to_label.mean()), 1),
        "over_90": round(float(np.mean(to_label > 90)), 3),
        "over_120": round(float(np.mean(to_label > 120)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", type=Path, required=True, help="a clean procedural dataset")
    parser.add_argument("--flip", type=Path, required=True, help="a --pose-noise-mode flip dataset")
    parser.add_argument("--classifiers", required=True, help="name=folder[,name=folder…]")
    args = parser.parse_args(argv)
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    for spec in args.classifiers.split(","):
        name, _, folder = spec.partition("=")
        classifier, card = load(folder)
        size = classifier.config.image_size
        for dataset in (args.clean, args.flip):
            start = time.perf_counter()
            rows, _ = dataset_rows(dataset, size)
            found = classifier.predict(rows["image"])
            moved = yaw_error(rows["true_yaw"], rows["yaw"])
            flipped = moved > 1.0
            groups = {"all": np.ones(len(flipped), bool)}
            if flipped.any():
                far = {"flips moved >= 90 deg": moved >= 90}
                groups |= {"flipped views": flipped, **far, "clean views": ~flipped}
            for group, chosen in groups.items():
                picked = {key: value[chosen] for key, value in found.items()}
                result = {
                    "classifier": name,
                    "classifier_held_out_accuracy": card.get("bin_accuracy"),
                    "dataset": dataset.name,
                    "group": group,
                    **scores(picked, rows["yaw"][chosen], rows["true_yaw"][chosen]),
                    "seconds": round(time.perf_counter() - start, 1),
                    "machine": machine,
                }
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
