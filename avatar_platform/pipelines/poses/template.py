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

from avatar_platform.core.errors import AvatarPlatformError

PART_NAMES = ("skin", "hair", "cloth", "eye", "accessory", "mouth")
SKIN, HAIR, CLOTH, EYE, ACCESSORY, MOUTH = range(len(PART_NAMES))

# COCO-18 keypoint order used by OpenPose; "right" is the avatar's right (world −x).
COCO18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
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
    eye_pos = [np.array([sx * eye_x, eye_y, _surface_z(params.head_radii, eye_x, eye_y) - 0.008])
               for sx in (-1.0, 1.0)]  # fmt: skip
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


def load_user_template(mesh_path: str | Path, landmarks_path: str | Path | None = None):
    """A user mesh (GLB/OBJ/PLY) posed with its head centre at the origin, +y up, facing +z, and
    a landmarks JSON (`{"nose": [x, y, z], …}`, COCO-18 names; default: `<mesh>.landmarks.json`)."""
    mesh_path = Path(mesh_path)
    landmarks_path = (
        Path(landmarks_path) if landmarks_path else mesh_path.with_suffix(".landmarks.json")
    )
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
    return AvatarTemplate(loaded, parts, landmarks, f"mesh-{mesh_path.stem}")


@functools.lru_cache(maxsize=4)
def _user_template_cached(mesh_path: str, landmarks_path: str | None) -> AvatarTemplate:
    return load_user_template(mesh_path, landmarks_path)


def template_for(
    avatar_seed: int, mesh_path: str | None = None, landmarks_path: str | None = None
) -> AvatarTemplate:
    """The template of one avatar: the user's mesh when given, else the seed's parametric bust."""
    if mesh_path:
        return _user_template_cached(str(mesh_path), landmarks_path)
    return bust_for_seed(int(avatar_seed))
