"""The defaults and limits every avatar request shares, in one place: the `sample` options, the
pyfunc's input columns and the HTTP API's bodies take them from here (issue #11)."""

from __future__ import annotations

TRUNCATION = 0.7  # ψ of a sampled avatar (1 = none); also what `eval` renders its pages at
MAX_SEED = 2**63 - 1  # torch's seeds are int64
VIEWS = 4  # views around the head, front first
MAX_VIEWS = 64
FRAMES = 24  # turntable frames
MESH_RESOLUTION = 64  # marching-cubes grid side of a served or pyfunc mesh
