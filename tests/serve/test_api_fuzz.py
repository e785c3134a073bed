"""A bounded schemathesis fuzz of the served spec: requests its schemas allow (and refuse), sent to
a real `serve.run`, answer without a 5xx and as the spec says (status code, content type, body
schema, headers), schema-valid requests are taken and invalid ones refused. The app's limits
(conftest FUZZ_LIMITS) keep every valid request cheap to render."""

from __future__ import annotations

import io

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 80)).save(buffer, format="PNG")
    return buffer.getvalue()


PICTURE = _png()
MAX_EXAMPLES = 15  # per operation, body type and mode: the whole fuzz stays well under a minute


def _operations(url: str):
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=url)
    for result in schema.get_all_operations():
        operation = result.ok()
        body = operation.definition.raw.get("requestBody", {}).get("content", {})
        for media_type in body or [None]:
            yield operation, media_type


def _with_picture(case):
    if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
        case.body["image"] = PICTURE
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_answers_as_its_spec_says_and_never_fails(fuzz_url, mode):
    tried = []
    for operation, media_type in _operations(fuzz_url):
        strategy = operation.as_strategy(generation_mode=mode, media_type=media_type)
        if mode == GenerationMode.POSITIVE:
            # a schema says "bytes", not "a picture": valid uploads carry a real one
            strategy = strategy.map(_with_picture)

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call_and_validate(timeout=60)
            assert response.status_code < 500, (response.status_code, response.text[:300])

        try:
            fuzz()
        except Unsatisfiable:  # nothing to negate (GET /healthz; string path parameters)
            assert mode == GenerationMode.NEGATIVE, operation.label
            continue
        tried.append(f"{operation.label} {media_type or ''}".strip())
    assert "POST /v1/avatars multipart/form-data" in tried, tried
    if mode == GenerationMode.POSITIVE:  # (string path parameters have no invalid values)
        assert "GET /v1/avatars/{result_id}/{name}" in tried, tried
