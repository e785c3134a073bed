"""One avatar request shape (issue #11): the `sample` options, the pyfunc's rows and the HTTP
API's bodies all take their defaults and bounds from `formats.avatar_spec`, so a bound moved
there moves on every surface, and none of them accepts what another refuses."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError
from typer.main import get_command
from typer.testing import CliRunner

from avatar_platform.cli.app import app
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats import avatar_spec as spec
from avatar_platform.pipelines.inference.pyfunc import parse_requests
from avatar_platform.serve.config import ServeConfig
from avatar_platform.serve.schemas import ImageOptions, SeedsRequest, limits_schema

# the pyfunc column of each bounded field and a row that may carry it
ROW = {"views": "seed", "truncation": "seed", "mesh_resolution": "seed", "num_samples": "image"}
ROW |= {"guidance": "image", "refine": "image", "tune": "image"}


def _row(field: str, value) -> pd.DataFrame:
    base = {"seed": 0} if ROW[field] == "seed" else {"image": b"\x89PNG"}
    return pd.DataFrame([{**base, field: value}])


@pytest.mark.parametrize("field", sorted(ROW))
def test_a_pyfunc_row_takes_the_spec_bounds_of_a_served_request(field):
    default, low, high = spec.served_bounds(field)
    assert high is not None and low is not None
    integer = isinstance(high, int)
    (request,) = parse_requests(_row(field, high))
    assert getattr(request, field) == high
    unset = parse_requests(pd.DataFrame([{"seed": 0} if ROW[field] == "seed" else {"image": b"x"}]))
    assert getattr(unset[0], field) == default
    above = high + 1 if integer else high + 0.5
    with pytest.raises(AvatarPlatformError, match=f"{field} between {low} and {high}"):
        parse_requests(_row(field, above))


def test_a_served_mesh_is_capped_below_what_sample_may_make():
    assert spec.served_bounds("mesh_resolution")[2] == spec.SERVED_MESH_RESOLUTION
    assert spec.bounds("mesh_resolution")[2] == spec.MAX_MESH_RESOLUTION > spec.SERVED_MESH_RESOLUTION
    with pytest.raises(AvatarPlatformError, match="mesh_resolution between 16 and 256"):
        parse_requests(_row("mesh_resolution", spec.SERVED_MESH_RESOLUTION + 1))


def test_the_sample_options_have_the_spec_bounds_and_its_defaults():
    command = get_command(app).commands["sample"]
    options = {param.name: param for param in command.params}
    for field in ("views", "truncation", "frames", "mesh_resolution", "num_samples", "guidance"):
        default, low, high = spec.bounds(field)
        option = options[field]
        assert (option.min, option.max) == (low, high), field
        assert option.default == spec.SAMPLE_DEFAULTS.get(field, default), field
    # and the command refuses a value over the spec's bound before it loads anything
    refused = CliRunner().invoke(app, ["sample", "--model", "nowhere", "--views", str(spec.MAX_VIEWS + 1)])
    assert refused.exit_code == 2 and f"less than or equal to {spec.MAX_VIEWS}" in refused.output


def test_the_http_bodies_are_the_spec_and_refuse_what_it_refuses():
    options = set(spec.AvatarSpec.model_fields)
    assert set(ImageOptions.model_fields) == options
    assert set(SeedsRequest.model_fields) == set(spec.RenderSpec.model_fields) | {"seeds"}
    assert SeedsRequest(seeds=[1]).truncation == spec.TRUNCATION
    for field in ("views", "frames", "mesh_resolution"):
        high = spec.bounds(field)[2]
        SeedsRequest.model_validate({"seeds": [1], field: high})
        with pytest.raises(ValidationError, match=field):
            SeedsRequest.model_validate({"seeds": [1], field: high + 1})
    with pytest.raises(ValidationError, match="num_samples"):
        ImageOptions(num_samples=spec.MAX_SAMPLES + 1)


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("max_views", spec.MAX_VIEWS + 1),
        ("max_frames", spec.MAX_FRAMES + 1),
        ("max_resolution", spec.MAX_RESOLUTION + 1),
        ("max_mesh_resolution", spec.SERVED_MESH_RESOLUTION + 1),
        ("max_refine_steps", spec.MAX_REFINE_STEPS + 1),
    ],
)
def test_a_deployment_cannot_allow_more_than_the_spec(limit, value):
    with pytest.raises(ValidationError, match=limit):
        ServeConfig(**{limit: value})


def test_the_spec_of_a_deployment_never_states_more_samples_than_a_picture_may_ask():
    # num_samples shares the deployment's max_seeds, which may be above the spec's bound
    schema = limits_schema(ServeConfig(max_seeds=100))
    assert schema["seeds"]["maxItems"] == 100
    assert schema["num_samples"]["maximum"] == spec.MAX_SAMPLES
