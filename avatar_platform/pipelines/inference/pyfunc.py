"""The registered `styleavatar3d` model as an MLflow pyfunc: seeds or pictures in, views and meshes
out, one output row per avatar.

Logged with `loader_module` (this module) and the model folder as `data_path`, so loading reads
json + safetensors and never unpickles code. Used by `registry register`, `sample` and `serve`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.avatar_spec import (
    FRAMES,
    MAX_SEED,
    MESH_RESOLUTION,
    TRUNCATION,
    VIEWS,
    RenderSpec,
    served_bounds,
)
from avatar_platform.formats.model_folder import is_diffusion_folder, load_generator
from avatar_platform.pipelines.inference import sampling

# column → (default, lowest, highest): the spec's bounds of a served request, which keep one
# request from running for hours
DEFAULTS: dict[str, tuple[Any, Any, Any]] = {
    column: served_bounds(column)
    for column in ("views", "truncation", "mesh_resolution", "num_samples", "guidance", "refine", "tune")
}


@dataclass(frozen=True)
class AvatarRequest:
    """One checked request for avatars: a seed or a picture, and how to render what it gives
    (the fields of `formats.avatar_spec.AvatarSpec`, with its defaults). A pyfunc row fills the
    views and mesh; the HTTP API also the view size and the turntable."""

    index: int = 0
    seed: int | None = None
    image: bytes | None = None
    views: int = VIEWS
    truncation: float = TRUNCATION
    mesh: bool = False
    mesh_resolution: int = MESH_RESOLUTION
    num_samples: int = 1
    guidance: float | None = None
    refine: int = 0
    tune: int = 0
    resolution: int | None = None  # side of each returned view (None: the model's own)
    turntable: bool = False
    frames: int = FRAMES

    @classmethod
    def from_spec(
        cls, spec: RenderSpec, seed: int | None = None, image: bytes | None = None
    ) -> AvatarRequest:
        """The request of a checked spec (an HTTP body): its fields, and the seed or picture."""
        return cls(seed=seed, image=image, **spec.model_dump(exclude={"seeds"}))

    @property
    def refines(self) -> bool:
        return bool(self.refine or self.tune)


@dataclass(frozen=True)
class Avatar:
    """One avatar to render: its ws (1, num_ws, w_dim) and the generator that renders it (the
    model's own, or a pivotal-tuned copy for a refined picture)."""

    ws: torch.Tensor
    generator: torch.nn.Module


def signature():
    """The explicit MLflow signature: one row per request, one output row per avatar."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    inputs = Schema(
        [
            # Any, not long: pandas integer columns cannot hold NA, and a frame mixing seed rows
            # and picture rows has NA seeds; rows are checked by parse_requests instead
            ColSpec(AnyType(), "seed", required=False),
            ColSpec("binary", "image", required=False),
            ColSpec("long", "views", required=False),
            ColSpec("double", "truncation", required=False),
            ColSpec("boolean", "mesh", required=False),
            ColSpec("long", "mesh_resolution", required=False),
            ColSpec("long", "num_samples", required=False),
            ColSpec("double", "guidance", required=False),
            ColSpec("long", "refine", required=False),
            ColSpec("long", "tune", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("long", "request"),
            ColSpec("long", "sample"),
            ColSpec("binary", "views_png"),
            ColSpec("binary", "mesh_glb"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # true for NaN only
    except TypeError:
        return True  # pd.NA: its comparison is NA, which has no truth value
    except ValueError:
        return False  # an array: present (and refused by the type checks)


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value  # numpy scalars → Python


def _integer(value: Any, column: str, row: int) -> int:
    """An int from a cell that pandas may have turned into a float (NaN elsewhere in the column)."""
    number = _python(value)
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise AvatarPlatformError(f"row {row}: {column} is {value!r}", expected="an integer")
    return number


def _number(value: Any, column: str, row: int) -> float:
    number = _python(value)
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise AvatarPlatformError(f"row {row}: {column} is {value!r}", expected="a number")
    return float(number)


def _bounded(row: dict[str, Any], column: str, index: int, integer: bool) -> int | float | None:
    default, low, high = DEFAULTS[column]
    value = row.get(column)
    if _missing(value):
        return default
    number = _integer(value, column, index) if integer else _number(value, column, index)
    if not low <= number <= high:
        raise AvatarPlatformError(
            f"row {index}: {column} is {number}", expected=f"{column} between {low} and {high}"
        )
    return number


def parse_requests(frame: pd.DataFrame) -> list[AvatarRequest]:
    """Check every row before any rendering starts; a bad row is one error naming it."""
    if len(frame) == 0:
        raise AvatarPlatformError(
            "the request has no rows", expected="one row per avatar with a `seed` or an `image`"
        )
    requests = []
    for index, row in enumerate(frame.to_dict("records")):
        seed, image = row.get("seed"), row.get("image")
        has_seed, has_image = not _missing(seed), not _missing(image)
        if has_seed == has_image:
            raise AvatarPlatformError(
                f"row {index} has {'both a seed and an image' if has_seed else 'no seed and no image'}",
                expected="exactly one of `seed` (an integer) or `image` (PNG/JPEG bytes) per row",
            )
        if has_seed:
            seed = _integer(seed, "seed", index)
            if not 0 <= seed <= MAX_SEED:
                raise AvatarPlatformError(f"row {index}: seed is {seed}", expected="a seed >= 0")
        if has_image and not isinstance(image, bytes | bytearray | memoryview):
            raise AvatarPlatformError(
                f"row {index}: image is a {type(image).__name__}", expected="the bytes of a PNG or JPEG file"
            )
        refine = _bounded(row, "refine", index, integer=True)
        tune = _bounded(row, "tune", index, integer=True)
        if (refine or tune) and not has_image:
            raise AvatarPlatformError(
                f"row {index} asks for refine/tune without an image",
                expected="refine and tune on `image` rows (they fit the avatar to the picture)",
            )
        mesh = row.get("mesh")
        mesh = False if _missing(mesh) else _python(mesh)
        if not isinstance(mesh, bool):
            raise AvatarPlatformError(f"row {index}: mesh is {mesh!r}", expected="true or false")
        requests.append(
            AvatarRequest(
                index=index,
                seed=seed if has_seed else None,
                image=bytes(image) if has_image else None,
                views=_bounded(row, "views", index, integer=True),
                truncation=_bounded(row, "truncation", index, integer=False),
                mesh=mesh,
                mesh_resolution=_bounded(row, "mesh_resolution", index, integer=True),
                num_samples=_bounded(row, "num_samples", index, integer=True),
                guidance=_bounded(row, "guidance", index, integer=False),
                refine=refine,
                tune=tune,
            )
        )
    return requests


def png_bytes(image) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class StyleAvatar3DModel:
    """What `_load_pyfunc` returns: the generator, and the package folder for the diffusion parts."""

    def __init__(self, folder: Path, generator) -> None:
        self.folder = Path(folder)
        self.generator = generator
        self.has_image_conditioning = is_diffusion_folder(self.folder)

    def predict(self, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """(requests) → one row per avatar: request, sample, views_png, mesh_glb.

        `params` is accepted for MLflow's calling convention; the signature declares none.
        """
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        requests = parse_requests(frame)
        if not self.has_image_conditioning and any(r.image is not None for r in requests):
            raise AvatarPlatformError(
                "this model has no image conditioning (a generator-only package)",
                expected="`seed` rows for this model",
                fix="register a `train diffusion` output to turn pictures into avatars, or send seeds",
            )
        rows = []
        for request in requests:
            for sample, avatar in enumerate(self.avatar_list(request)):
                rows.append(
                    {
                        "request": request.index,
                        "sample": sample,
                        "views_png": png_bytes(sampling.view_row(avatar.generator, avatar.ws, request.views)),
                        "mesh_glb": self._mesh(avatar, request) if request.mesh else b"",
                    }
                )
        return pd.DataFrame(rows, columns=["request", "sample", "views_png", "mesh_glb"])

    def avatars(self, request: AvatarRequest, picture=None) -> list[torch.Tensor]:
        """The ws (1, num_ws, w_dim) of each avatar a request asks for (the diffusion's samples
        for a picture, `picture` when it is already decoded; a refined request's are in
        `avatar_list`)."""
        if request.seed is not None:
            return [sampling.ws_for_seed(self.generator, request.seed, request.truncation)]
        from avatar_platform.pipelines.inference.style_sampling import ws_from_image

        picture = picture or self._picture(request)
        ws = ws_from_image(self.folder, self.generator, picture, request.num_samples, request.guidance)
        return [ws[i : i + 1] for i in range(len(ws))]

    def avatar_list(self, request: AvatarRequest) -> list[Avatar]:
        """Every avatar of a request with its generator: a refined picture gives one avatar, the
        best of its `num_samples` diffusion samples fitted to it (and rendered by the tuned copy)."""
        if not request.refines:
            return [Avatar(ws, self.generator) for ws in self.avatars(request)]
        from avatar_platform.formats.pictures import image_tensor
        from avatar_platform.pipelines.inference.refine import refine

        picture = self._picture(request)
        device = next(self.generator.parameters()).device
        target = image_tensor(picture, self.generator.config.img_resolution)[None].to(device)
        candidates = torch.cat(self.avatars(request, picture))
        with torch.enable_grad():
            result = refine(self.generator, target, candidates, request.refine, request.tune)
        return [Avatar(result.ws, result.generator)]

    def _picture(self, request: AvatarRequest):
        from avatar_platform.formats.pictures import load_image

        return load_image(request.image, name=f"the image of row {request.index}")

    def _mesh(self, avatar: Avatar, request: AvatarRequest) -> bytes:
        return self.mesh(avatar.ws, request.mesh_resolution, avatar.generator).export(file_type="glb")

    def mesh(self, ws: torch.Tensor, resolution: int, generator=None):
        """The avatar's trimesh (by `generator`, default the model's); exported, an empty one is
        still a valid GLB. Level None: a registered model may be early in training, below
        EG3D's level 10."""
        return sampling.mesh_for_ws(generator or self.generator, ws, resolution, None)


def load_model(folder: str | Path, device: str | None = None) -> StyleAvatar3DModel:
    """The pyfunc model of a package folder (a GAN or diffusion model folder)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return StyleAvatar3DModel(Path(folder), load_generator(folder, device=device))


def _load_pyfunc(data_path: str) -> StyleAvatar3DModel:
    """MLflow's entry point: `data_path` is the model folder copied into the logged model."""
    return load_model(data_path)
