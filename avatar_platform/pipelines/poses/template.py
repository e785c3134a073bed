"""Avatar templates: 3D head-and-shoulders meshes with landmarks, posed at the world origin.

A template is either a built-in parametric bust (head, ears, nose, eyes, neck, shoulders, hair and
accessories; the shape varied by a seed) or a user mesh (GLB/OBJ/PLY through trimesh) with a
landmarks JSON. Every face carries a part id (skin, hair, …) so the procedural backend can colour it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from avatar_platform.core.digest import file_sha256
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.camera import EG3D_FOCAL

PART_NAMES = ("skin", "hair", "cloth", "eye", "accessory", "mouth")
SKIN, HAIR, CLOTH, EYE, ACCESSORY, MOUTH = range(len(PART_NAMES))

# COCO-18 keypoint order used by OpenPose; "right" is the avatar's right (world −x).
COCO18_NAMES = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
# Landmarks on the surface are drawn only where the camera sees them; skeletal joints (neck,
# shoulders) lie inside the body and OpenPose reports them from every side.
SURFACE_LANDMARKS = frozenset({"nose", "right_eye", "left_eye", "right_ear", "left_ear"})

BUST_SCALE = 0.72
HAIR_STYLES = ("bald", "short", "long", "bun", "spiky", "bob")
EYEWEAR = ("none", "glasses")
HEADWEAR = ("none", "beanie", "top hat")


@dataclass(frozen=True)
class BustParams:
    """The shape of a parametric bust; `sample(seed)` draws one."""

    head_radii: tuple[float, float, float] = (0.125, 0.155, 0.14)
    nose_scale: float = 1.0
    ear_scale: float = 1.0
    neck_radius: float = 0.055
    shoulder_width: float = 0.3
    hair_style: str = "short"
    eyewear: str = "none"
    headwear: str = "none"

    @classmethod
    def sample(cls, seed: int) -> BustParams:
        rng = np.random.default_rng(seed)
        return cls(
            head_radii=(
                float(rng.uniform(0.115, 0.135)),
                float(rng.uniform(0.145, 0.165)),
                float(rng.uniform(0.13, 0.15)),
            ),
            nose_scale=float(rng.uniform(0.7, 1.4)),
            ear_scale=float(rng.uniform(0.8, 1.3)),
            neck_radius=float(rng.uniform(0.045, 0.065)),
            shoulder_width=float(rng.uniform(0.26, 0.34)),
            hair_style=str(rng.choice(HAIR_STYLES, p=[0.1, 0.3, 0.2, 0.15, 0.1, 0.15])),
            eyewear=str(rng.choice(EYEWEAR, p=[0.8, 0.2])),
            headwear=str(rng.choice(HEADWEAR, p=[0.8, 0.12, 0.08])),
        )

    def prompt_attributes(self) -> dict[str, str]:
        """The template's geometry as prompt attributes (hair style, eyewear, headwear)."""
        out = {"hair style": f"{self.hair_style} hair" if self.hair_style != "bald" else "bald"}
        if self.eyewear != "none":
            out["eyewear"] = f"wearing {self.eyewear}"
        if self.headwear != "none":
            out["headwear"] = f"wearing a {self.headwear}"
        return out


@dataclass
class AvatarTemplate:
    """A posed mesh, a part id per face, and named 3D landmarks (world coordinates)."""

    mesh: trimesh.Trimesh
    face_parts: np.ndarray  # (F,) uint8, indices into PART_NAMES
    landmarks: dict[str, np.ndarray]  # name → (3,)
    template_id: str
    params: dict = field(default_factory=dict)

    @functools.cached_property
    def intersector(self):
        """Embree-backed ray intersector when embreex is installed (trimesh picks it)."""
        return self.mesh.ray


def _ellipsoid(radii, centre, subdivisions: int = 3) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    mesh.apply_scale(radii)
    mesh.apply_translation(centre)
    return mesh


def _surface_z(radii, x: float, y: float) -> float:
    """z of the front surface of an origin-centred ellipsoid at (x, y)."""
    rx, ry, rz = radii
    return rz * float(np.sqrt(max(1.0 - (x / rx) ** 2 - (y / ry) ** 2, 0.0)))


def _keep_faces(mesh: trimesh.Trimesh, keep: np.ndarray) -> trimesh.Trimesh:
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def _hair(params: BustParams) -> list[trimesh.Trimesh]:
    rx, ry, rz = params.head_radii
    if params.hair_style == "bald":
        return []
    shell = _ellipsoid((rx * 1.1, ry * 1.07, rz * 1.1), (0.0, 0.012, -0.008), subdivisions=4)
    c = shell.triangles_center
    zn, xn = c[:, 2] / rz, c[:, 0] / rx
    # hairline: high on the forehead, low at the nape; the face stays free
    hairline = np.where(zn > 0.45, 0.075, -0.13 + 0.205 * (zn + 1.0) / 1.45)
    keep = c[:, 1] > hairline
    if params.hair_style in ("short", "spiky", "bun"):
        keep &= ~((np.abs(xn) > 0.75) & (c[:, 1] < 0.035) & (zn > -0.4))  # ears stay free
    parts = [_keep_faces(shell, keep)]
    if params.hair_style == "long":
        parts.append(_ellipsoid((rx * 1.15, 0.2, 0.07), (0.0, -0.1, -0.09)))
    elif params.hair_style == "bob":
        parts.append(_ellipsoid((rx * 1.18, 0.12, rz * 0.95), (0.0, -0.02, -0.04)))
    elif params.hair_style == "bun":
        parts.append(_ellipsoid((0.055, 0.055, 0.055), (0.0, ry * 0.95, -rz * 0.6)))
    elif params.hair_style == "spiky":
        for angle in np.linspace(-1.0, 1.0, 5):
            spike = trimesh.creation.cone(radius=0.03, height=0.09, sections=8)
            spike.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
            spike.apply_transform(trimesh.transformations.rotation_matrix(angle * 0.7, [0, 0, 1]))
            spike.apply_translation([np.sin(angle * 0.7) * ry * 0.9, np.cos(angle * 0.7) * ry, 0])
            parts.append(spike)
    return parts


def _accessories(params: BustParams, eye_pos: list[np.ndarray]) -> list[trimesh.Trimesh]:
    rx, ry, rz = params.head_radii
    parts = []
    if params.eyewear == "glasses":
        for eye in eye_pos:
            ring = trimesh.creation.torus(major_radius=0.028, minor_radius=0.005)
            ring.apply_translation(eye + np.array([0.0, 0.0, 0.012]))
            parts.append(ring)
        bridge = trimesh.creation.box(extents=(0.04, 0.006, 0.006))
        bridge.apply_translation((eye_pos[0] + eye_pos[1]) / 2 + np.array([0.0, 0.0, 0.012]))
        parts.append(bridge)
    if params.headwear == "beanie":
        cap = _ellipsoid((rx * 1.16, ry * 0.9, rz * 1.16), (0.0, ry * 0.32, -0.01), 3)
        parts.append(_keep_faces(cap, cap.triangles_center[:, 1] > ry * 0.25))
    elif params.headwear == "top hat":
        crown = trimesh.creation.cylinder(radius=rx * 0.85, height=0.16, sections=24)
        crown.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        crown.apply_translation([0.0, ry + 0.06, -0.01])
        brim = trimesh.creation.cylinder(radius=rx * 1.5, height=0.012, sections=24)
        brim.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        brim.apply_translation([0.0, ry * 0.82, -0.01])
        parts += [crown, brim]
    return parts


def build_bust(params: BustParams, template_id: str = "bust") -> AvatarTemplate:
    """The parametric bust for `params` with its COCO-18 landmarks."""
    rx, ry, rz = params.head_radii
    eye_y, eye_x = 0.02, 0.045
    eye_pos = [
        np.array([sx * eye_x, eye_y, _surface_z(params.head_radii, eye_x, eye_y) - 0.008])
        for sx in (-1.0, 1.0)
    ]
    nose_radii = (0.022 * params.nose_scale, 0.032 * params.nose_scale, 0.03 * params.nose_scale)
    nose_centre = np.array([0.0, -0.02, _surface_z(params.head_radii, 0.0, -0.02) - 0.004])
    ear_radii = (0.016, 0.035 * params.ear_scale, 0.026 * params.ear_scale)
    ear_pos = [np.array([sx * rx * 0.97, 0.0, -0.012]) for sx in (-1.0, 1.0)]
    mouth_centre = np.array([0.0, -0.075, _surface_z(params.head_radii, 0.0, -0.075) - 0.006])
    neck_top, neck_bottom = -0.11, -0.25
    neck = trimesh.creation.cylinder(radius=params.neck_radius, height=neck_top - neck_bottom)
    neck.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    neck.apply_translation([0.0, (neck_top + neck_bottom) / 2, -0.015])
    shoulders_centre = np.array([0.0, -0.37, -0.02])
    shoulders = _ellipsoid((params.shoulder_width, 0.15, 0.13), shoulders_centre, 3)

    pieces: list[tuple[trimesh.Trimesh, int]] = [
        (_ellipsoid(params.head_radii, (0.0, 0.0, 0.0), 4), SKIN),
        (_ellipsoid(nose_radii, nose_centre), SKIN),
        (_ellipsoid((0.03, 0.008, 0.012), mouth_centre, 2), MOUTH),
        (neck, SKIN),
        (shoulders, CLOTH),
    ]
    pieces += [(_ellipsoid(ear_radii, pos), SKIN) for pos in ear_pos]
    pieces += [(_ellipsoid((0.017, 0.017, 0.012), pos, 2), EYE) for pos in eye_pos]
    pieces += [(mesh, HAIR) for mesh in _hair(params)]
    pieces += [(mesh, ACCESSORY) for mesh in _accessories(params, eye_pos)]

    mesh = trimesh.util.concatenate([m for m, _ in pieces])
    # the pieces are modelled at a head height of ~0.3; scaling keeps the head, a hat and the
    # top of the shoulders inside EG3D's field of view (half-width ≈ 0.32 at radius 2.7); the
    # shoulders run out of the frame at the bottom, as in a head-and-shoulders portrait
    mesh.apply_scale(BUST_SCALE)
    face_parts = np.concatenate([np.full(len(m.faces), p, np.uint8) for m, p in pieces])
    shoulder_y = shoulders_centre[1] + 0.08
    landmarks = {
        "nose": nose_centre + np.array([0.0, 0.0, nose_radii[2]]),
        "neck": np.array([0.0, shoulder_y, -0.02]),
        "right_shoulder": np.array([-params.shoulder_width * 0.75, shoulder_y, -0.02]),
        "left_shoulder": np.array([params.shoulder_width * 0.75, shoulder_y, -0.02]),
        "right_eye": eye_pos[0] + np.array([0.0, 0.0, 0.012]),
        "left_eye": eye_pos[1] + np.array([0.0, 0.0, 0.012]),
        "right_ear": ear_pos[0] + np.array([-ear_radii[0], 0.0, 0.0]),
        "left_ear": ear_pos[1] + np.array([ear_radii[0], 0.0, 0.0]),
    }
    landmarks = {name: point * BUST_SCALE for name, point in landmarks.items()}
    return AvatarTemplate(mesh, face_parts, landmarks, template_id, asdict(params))


@functools.lru_cache(maxsize=64)
def bust_for_seed(seed: int) -> AvatarTemplate:
    """The bust of an avatar seed; cached per worker process (views of one avatar share it)."""
    return build_bust(BustParams.sample(seed), template_id=f"bust-{seed}")


# --- checking user meshes against the cameras -------------------------------------------------
# Sizes are relative to the default built-in bust (`reference_bust()`), the frame the cameras are
# set up for: radius 2.7 and focal 4.2647 see ±0.32 around the head centre.
MIN_SIZE, MAX_SIZE = 0.25, 2.5  # × the built-in bust's largest extent
CAMERA_MARGIN = 0.5  # every vertex within this share of the camera radius of the look-at point
ORIGIN_MARGIN = 0.1  # × the built-in bust's size: the origin lies inside the bounds grown by it
HEAD_OFFSET = 0.5  # × the built-in bust's size: the nose lies this near the origin at most
SURFACE_TOLERANCE = 0.04  # × the mesh's size: nose, eyes and ears lie on the surface
JOINT_TOLERANCE = 0.25  # × the mesh's size: neck and shoulders lie inside the body, near it
NORMALIZE_HINT = (
    "or pass --template-normalize (template_normalize: true) to centre and scale it from its ears or eyes"
)


@functools.cache
def reference_bust() -> dict:
    """Measures of the default built-in bust: the yardstick user meshes are checked against."""
    bust = build_bust(BustParams())
    marks = bust.landmarks
    return {
        "width": float(bust.mesh.extents[0]),
        "size": float(bust.mesh.extents.max()),
        "nose_offset": float(np.linalg.norm(marks["nose"])),
        "ear_distance": float(np.linalg.norm(marks["left_ear"] - marks["right_ear"])),
        "ear_midpoint": tuple((marks["left_ear"] + marks["right_ear"]) / 2),
        "eye_distance": float(np.linalg.norm(marks["left_eye"] - marks["right_eye"])),
        "eye_midpoint": tuple((marks["left_eye"] + marks["right_eye"]) / 2),
    }


def _fmt(values) -> str:
    return "[" + ", ".join(f"{float(v):.3g}" for v in np.atleast_1d(values)) + "]"


def _expected_units(ref: dict) -> str:
    return (
        f"a bust in the same units as the camera radius 2.7, about {ref['width']:.2f} units wide "
        f"and {ref['size']:.2f} across, like the built-in busts (life-size in metres)"
    )


def surface_distances(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """(N,) distance of each point to the nearest point of the mesh surface (exact, no rtree)."""
    triangles = mesh.triangles
    low, high = triangles.min(axis=1), triangles.max(axis=1)
    out = []
    for point in np.asarray(points, dtype=np.float64):
        bound = np.linalg.norm(mesh.vertices - point, axis=1).min()  # a vertex is that close
        box = np.linalg.norm(np.maximum(np.maximum(low - point, point - high), 0.0), axis=1)
        near = triangles[box <= bound + 1e-12]
        closest = trimesh.triangles.closest_point(near, np.repeat(point[None], len(near), 0))
        out.append(float(np.linalg.norm(closest - point, axis=1).min()))
    return np.asarray(out)


def _require_finite_landmarks(template: AvatarTemplate, source: str) -> None:
    for name, point in template.landmarks.items():
        if not np.all(np.isfinite(point)):
            raise AvatarPlatformError(
                f"landmark '{name}' of {source} is not a finite point ({_fmt(point)})",
                expected="three finite numbers [x, y, z] per landmark",
                fix="write the point's coordinates, or leave the landmark out",
            )


def check_landmarks(template: AvatarTemplate, source: str = "the template mesh") -> None:
    """Landmarks are finite and lie on (nose, eyes, ears) or near (joints) the mesh surface,
    within a share of the mesh's own size — i.e. in the mesh's units and coordinates."""
    _require_finite_landmarks(template, source)
    size = float(template.mesh.extents.max())
    names = list(template.landmarks)
    distances = surface_distances(template.mesh, np.stack([template.landmarks[n] for n in names]))
    for name, distance in zip(names, distances, strict=True):
        share = SURFACE_TOLERANCE if name in SURFACE_LANDMARKS else JOINT_TOLERANCE
        if distance > share * size:
            kind = "on" if name in SURFACE_LANDMARKS else "inside the body, near"
            raise AvatarPlatformError(
                f"landmark '{name}' {_fmt(template.landmarks[name])} of {source} lies "
                f"{distance:.3g} units from the mesh surface, and the mesh is {size:.3g} across",
                expected=f"'{name}' {kind} the surface (within {share * size:.3g}), in the mesh's "
                "units and coordinates",
                fix="write the landmarks in the mesh's units and origin (landmarks in centimetres "
                "for a mesh in metres are 100× too far), or re-pick them on the exported mesh",
            )


def check_template(template: AvatarTemplate, camera=None, source: str = "the template mesh") -> None:
    """Fail before any work when a user mesh does not fit the cameras: vertices finite, its size
    near the built-in busts', the origin (the head centre) inside it, the nose near the origin,
    landmarks on the surface; with `camera` (a CameraConfig), every vertex well inside its sphere.
    """
    ref = reference_bust()
    mesh = template.mesh
    if not np.all(np.isfinite(mesh.vertices)):
        bad = int((~np.isfinite(mesh.vertices).all(axis=1)).sum())
        raise AvatarPlatformError(
            f"{bad} vertices of {source} are not finite (NaN or infinity)",
            expected="a mesh with finite coordinates",
            fix="repair or re-export the mesh",
        )
    _require_finite_landmarks(template, source)
    low, high = mesh.bounds
    size = float(mesh.extents.max())
    bounds = f"bounds x {_fmt((low[0], high[0]))}, y {_fmt((low[1], high[1]))}, z " + _fmt((low[2], high[2]))
    if size > MAX_SIZE * ref["size"] or size < MIN_SIZE * ref["size"]:
        large = size > MAX_SIZE * ref["size"]
        radius, focal = (camera.radius, camera.focal) if camera else (2.7, EG3D_FOCAL)
        raise AvatarPlatformError(
            f"{source} is too {'large' if large else 'small'} for the cameras: it is {size:.3g} "
            f"units across ({bounds}), the cameras sit {radius:.3g} from the head centre and see "
            f"±{radius * 0.5 / focal:.2g} around it",
            expected=f"{_expected_units(ref)}: {MIN_SIZE * ref['size']:.3g} to {MAX_SIZE * ref['size']:.3g} across",
            fix=(
                "scale the mesh down (one in centimetres by 0.01, in millimetres by 0.001), "
                if large
                else "scale the mesh up (one in kilometres by 1000), "
            )
            + NORMALIZE_HINT,
        )
    margin = ORIGIN_MARGIN * ref["size"]
    if np.any(low > margin) or np.any(high < -margin):
        centre = (low + high) / 2
        raise AvatarPlatformError(
            f"{source} is not centred on the origin: its {bounds} (centre {_fmt(centre)}, "
            f"{np.linalg.norm(centre):.3g} units from the origin) do not hold the origin",
            expected="the head centre at the origin (0, 0, 0), where every camera looks, +y up, facing +z",
            fix=f"move the mesh so that its head centre is at the origin, {NORMALIZE_HINT}",
        )
    if camera is not None:
        look_at = np.asarray(camera.look_at, dtype=np.float64)
        far = float(np.linalg.norm(mesh.vertices - look_at, axis=1).max())
        if far > CAMERA_MARGIN * camera.radius:
            raise AvatarPlatformError(
                f"{source} reaches {far:.3g} units from the cameras' look-at point "
                f"{_fmt(look_at)}, and the cameras sit at radius {camera.radius:.3g} from it",
                expected=f"every vertex within {CAMERA_MARGIN * camera.radius:.3g} of the look-at "
                f"point (half the camera radius); {_expected_units(ref)}",
                fix=f"scale the mesh down or raise camera.radius, {NORMALIZE_HINT}",
            )
    check_landmarks(template, source)
    nose = template.landmarks.get("nose")
    if nose is not None and np.linalg.norm(nose) > HEAD_OFFSET * ref["size"]:
        raise AvatarPlatformError(
            f"the head is not at the origin: the nose of {source} is at {_fmt(nose)}, "
            f"{np.linalg.norm(nose):.3g} units from it ({bounds})",
            expected=f"the head centre at the origin (the built-in busts' nose is "
            f"{ref['nose_offset']:.2f} from it; at most {HEAD_OFFSET * ref['size']:.3g})",
            fix="move the mesh so that its head centre is at the origin (a bust exported standing "
            f"on y = 0 sits too high), {NORMALIZE_HINT}",
        )


def normalize_template(template: AvatarTemplate, source: str = "the template mesh"):
    """A copy of `template` scaled and moved so that its ears (else its eyes) are as far apart as
    the built-in bust's and their midpoint lies where the built-in bust's does (the head centre
    at the origin). `params["normalized"]` records the scale, the offset and the landmarks used:
    new = scale · old + offset. The mesh must already be +y up and facing +z."""
    ref = reference_bust()
    marks = template.landmarks
    pairs = [(feature, f"left_{feature}", f"right_{feature}") for feature in ("ear", "eye")]
    usable = [
        (feature, left, right)
        for feature, left, right in pairs
        if left in marks
        and right in marks
        and np.isfinite(np.linalg.norm(marks[left] - marks[right]))
        and np.linalg.norm(marks[left] - marks[right]) > 0
    ]
    if not usable:
        raise AvatarPlatformError(
            f"--template-normalize needs both ears or both eyes in the landmarks of {source}",
            expected="'left_ear' and 'right_ear' (or 'left_eye' and 'right_eye') points: their "
            "distance sets the scale and their midpoint the head centre",
            fix="add them to the landmarks JSON, or scale and move the mesh yourself",
        )
    feature, left, right = usable[0]
    scale = ref[f"{feature}_distance"] / float(np.linalg.norm(marks[left] - marks[right]))
    midpoint = (marks[left] + marks[right]) / 2
    offset = np.asarray(ref[f"{feature}_midpoint"]) - scale * midpoint
    mesh = template.mesh.copy()
    mesh.apply_scale(scale)
    mesh.apply_translation(offset)
    landmarks = {name: scale * point + offset for name, point in marks.items()}
    done = {"scale": scale, "offset": offset.tolist(), "from": f"{feature}s"}
    params = {**template.params, "normalized": done}
    return AvatarTemplate(mesh, template.face_parts, landmarks, template.template_id, params)


def describe_normalization(template: AvatarTemplate) -> str:
    """One line saying what `normalize_template` did (empty when it did not run)."""
    done = template.params.get("normalized")
    if not done:
        return ""
    return (
        f"template mesh normalised from its {done['from']}: scaled by {done['scale']:.4g}, then "
        f"moved by offset {_fmt(done['offset'])} (new = scale · old + offset)"
    )


def template_files(mesh_path: str | Path, landmarks_path: str | Path | None = None):
    """(mesh, landmarks) paths of a user template; landmarks default to <mesh>.landmarks.json."""
    mesh_path = Path(mesh_path)
    if landmarks_path:
        return mesh_path, Path(landmarks_path)
    return mesh_path, mesh_path.with_suffix(".landmarks.json")


def template_digests(mesh_path: str | Path, landmarks_path: str | Path | None = None) -> dict:
    """{"mesh": {"file", "sha256"}, "landmarks": {...}} of a user template's files (sha256 of
    their bytes, None for a file that is missing) — for the config hash and the dataset card."""
    out = {}
    for key, path in zip(("mesh", "landmarks"), template_files(mesh_path, landmarks_path), strict=True):
        out[key] = {"file": str(path), "sha256": file_sha256(path) if path.is_file() else None}
    return out


def load_user_template(
    mesh_path: str | Path, landmarks_path: str | Path | None = None, normalize: bool = False, camera=None
) -> AvatarTemplate:
    """A user mesh (GLB/OBJ/PLY) posed with its head centre at the origin, +y up, facing +z, and
    a landmarks JSON (`{"nose": [x, y, z], …}`, COCO-18 names; default: `<mesh>.landmarks.json`),
    in the units of the camera radius (see `check_template`). `normalize` centres and scales the
    mesh from its landmarks first (`normalize_template`)."""
    mesh_path, landmarks_path = template_files(mesh_path, landmarks_path)
    if not mesh_path.is_file():
        raise AvatarPlatformError(
            f"template mesh '{mesh_path}' does not exist",
            expected="a GLB, OBJ or PLY file",
            fix="pass the path of an existing mesh to --template-mesh",
        )
    try:
        loaded = trimesh.load(mesh_path, force="mesh")
    except Exception as err:  # trimesh raises many types for unreadable files
        raise AvatarPlatformError(
            f"cannot read the template mesh '{mesh_path}' ({type(err).__name__}: {err})",
            expected="a valid GLB, OBJ or PLY file with triangles",
            fix="re-export the mesh, e.g. from Blender",
        ) from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise AvatarPlatformError(
            f"the template mesh '{mesh_path}' has no triangles",
            expected="a triangle mesh",
            fix="export the mesh with its faces",
        )
    if not landmarks_path.is_file():
        raise AvatarPlatformError(
            f"the template mesh '{mesh_path}' has no landmarks file '{landmarks_path}'",
            expected=f"a JSON object of 3D points named among {', '.join(COCO18_NAMES)}",
            fix="write the landmarks JSON beside the mesh or pass --template-landmarks",
        )
    try:
        raw = json.loads(landmarks_path.read_text())
        landmarks = {str(k): np.asarray(v, dtype=np.float64).reshape(3) for k, v in raw.items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise AvatarPlatformError(
            f"cannot read landmarks from '{landmarks_path}' ({err})",
            expected='a JSON object like {"nose": [0, 0, 0.15], "left_eye": [...]}',
        ) from None
    unknown = sorted(set(landmarks) - set(COCO18_NAMES))
    if unknown or "nose" not in landmarks:
        raise AvatarPlatformError(
            f"landmarks file '{landmarks_path}' has "
            + (f"unknown names {unknown}" if unknown else "no 'nose' point"),
            expected=f"names among {', '.join(COCO18_NAMES)}, 'nose' included",
        )
    parts = np.full(len(loaded.faces), SKIN, np.uint8)
    template = AvatarTemplate(loaded, parts, landmarks, f"mesh-{mesh_path.stem}")
    source = f"the template mesh '{mesh_path}' (landmarks '{landmarks_path}')"
    if normalize:
        check_landmarks(template, source)  # in the mesh's units: they set the scale
        template = normalize_template(template, source)
    check_template(template, camera, source)
    return template


@functools.lru_cache(maxsize=4)
def _user_template_cached(mesh_path: str, landmarks_path: str | None, normalize: bool) -> AvatarTemplate:
    return load_user_template(mesh_path, landmarks_path, normalize)


def template_for(
    avatar_seed: int, mesh_path: str | None = None, landmarks_path: str | None = None, normalize: bool = False
) -> AvatarTemplate:
    """The template of one avatar: the user's mesh when given (centred and scaled from its
    landmarks with `normalize`), else the seed's parametric bust."""
    if mesh_path:
        return _user_template_cached(str(mesh_path), landmarks_path, bool(normalize))
    return bust_for_seed(int(avatar_seed))
