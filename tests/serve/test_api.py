"""The served API on a real `serve.run` (local Ray): seeds and pictures in, views, turntables and
GLB meshes out; every bad input a 4xx with a message while the server stays healthy; the API key;
the live version equals the alias's."""

from __future__ import annotations

import io
import json
import os

import pytest
import requests
import trimesh
from PIL import Image


def png(size=(64, 64), color=(200, 120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def post_seeds(url: str, body, **kwargs) -> requests.Response:
    return requests.post(f"{url}/v1/avatars", json=body, timeout=120, **kwargs)


def upload(url: str, data: bytes, content_type="image/png", fields=None, **kwargs):
    files = {"image": ("picture.png", data, content_type)}
    return requests.post(f"{url}/v1/avatars", files=files, data=fields or {}, timeout=120, **kwargs)


def fetch(url: str, link: str, **kwargs) -> requests.Response:
    response = requests.get(f"{url.split('/', 3)[0]}//{url.split('/', 3)[2]}{link}", timeout=30,
                            **kwargs)  # fmt: skip
    assert response.status_code == 200, response.text
    return response


def test_seeds_give_views_a_turntable_and_a_glb_that_trimesh_loads(served):
    body = {"seeds": [0, 7], "views": 3, "resolution": 48, "mesh": True, "mesh_resolution": 24,
            "frames": 6}  # fmt: skip
    response = post_seeds(served.url, body)
    assert response.status_code == 201, response.text
    result = response.json()
    assert [a["seed"] for a in result["avatars"]] == [0, 7]
    for avatar in result["avatars"]:
        assert len(avatar["views"]) == 3
        for link in avatar["views"]:
            view = fetch(served.url, link)
            assert view.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(view.content)).size == (48, 48)
        grid = Image.open(io.BytesIO(fetch(served.url, avatar["views_grid"]).content))
        assert grid.size == (3 * 48, 48)
        gif = Image.open(io.BytesIO(fetch(served.url, avatar["turntable"]).content))
        assert gif.format == "GIF" and gif.n_frames == 6
        glb = fetch(served.url, avatar["mesh"])
        assert glb.headers["content-type"] == "model/gltf-binary"
        assert glb.content[:4] == b"glTF"
        mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
        assert len(mesh.faces) == avatar["mesh_faces"] > 0
    # the set can be fetched again, as it was returned
    again = requests.get(f"{served.url}/v1/avatars/{result['id']}", timeout=30)
    assert again.status_code == 200 and again.json() == result


def test_a_served_seed_renders_as_the_model_does_in_process(served, tiny_diffusion):
    from avatar_platform.pipelines.inference.pyfunc import load_model
    from avatar_platform.serve.avatars import AvatarJob, render_jobs

    response = post_seeds(served.url, {"seeds": [3], "views": 2, "turntable": False})
    assert response.status_code == 201, response.text
    avatar = response.json()["avatars"][0]
    assert avatar["turntable"] is None and avatar["mesh"] is None
    job = AvatarJob(seed=3, image=None, views=2, resolution=None, mesh=False,
                    mesh_resolution=16, turntable=False, frames=2, truncation=0.7)  # fmt: skip
    [[local]] = render_jobs(load_model(tiny_diffusion, device="cpu"), [job])
    served_views = [fetch(served.url, link).content for link in avatar["views"]]
    assert served_views == local.views


def test_an_uploaded_picture_becomes_avatars(served):
    response = upload(served.url, png(), fields={"num_samples": "2", "views": "2",
                                                  "turntable": "false"})  # fmt: skip
    assert response.status_code == 201, response.text
    result = response.json()
    assert [(a["seed"], a["sample"]) for a in result["avatars"]] == [(None, 0), (None, 1)]
    assert result["options"]["num_samples"] == 2
    first, second = (fetch(served.url, a["views_grid"]).content for a in result["avatars"])
    assert first != second  # samples of one picture differ by their noise


def test_the_live_model_is_the_version_the_alias_names(served, monkeypatch):
    from avatar_platform.pipelines.inference import registry

    monkeypatch.setenv("AVATAR_HOME", str(served.home))
    holder = registry.resolve_alias(registry.MODEL_NAME, "champion")
    info = requests.get(f"{served.url}/v1/model", timeout=30).json()
    assert info["version"] == int(holder.version) == served.version
    assert info["name"] == registry.MODEL_NAME and info["alias"] == "champion"
    assert info["image_conditioning"] is True
    assert post_seeds(served.url, {"seeds": [1], "turntable": False}).json()["model"] == info


def test_the_openapi_spec_documents_both_request_kinds(served):
    spec = requests.get(f"{served.url}/openapi.json", timeout=30).json()
    create = spec["paths"]["/v1/avatars"]["post"]
    assert set(create["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"/healthz", "/v1/model", "/v1/avatars/{result_id}/{name}"} <= set(spec["paths"])
    assert {"401", "413", "415", "422"} <= set(create["responses"])


BIG = os.urandom(300 * 1024)  # over the fixture's 256 KiB upload limit


def _huge_picture() -> bytes:
    buffer = io.BytesIO()  # 5M pixels in a few KB: over the fixture's 4M pixel limit
    Image.new("RGB", (2500, 2000), (10, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS = {
    "non-image bytes": (lambda u: upload(u, b"this is not a picture at all" * 10), 422),
    "truncated png": (lambda u: upload(u, png()[:60]), 422),
    "too many pixels": (lambda u: upload(u, _huge_picture()), 422),
    "oversized upload": (lambda u: upload(u, BIG), 413),
    "wrong upload type": (lambda u: upload(u, png(), content_type="text/plain"), 415),
    "no image field": (
        lambda u: requests.post(f"{u}/v1/avatars", files={"x": ("a", b"1")}, timeout=30),
        422,
    ),  # fmt: skip
    "unknown form field": (lambda u: upload(u, png(), fields={"colour": "red"}), 422),
    "wrong content type": (
        lambda u: requests.post(
            f"{u}/v1/avatars", data="seeds=1", headers={"Content-Type": "text/plain"}, timeout=30
        ),
        415,
    ),  # fmt: skip
    "malformed json": (
        lambda u: requests.post(
            f"{u}/v1/avatars",
            data="{seeds: [1",
            headers={"Content-Type": "application/json"},
            timeout=30,
        ),
        400,
    ),  # fmt: skip
    "json array": (lambda u: post_seeds(u, [1, 2]), 400),
    "unknown field": (lambda u: post_seeds(u, {"seeds": [1], "colour": "red"}), 422),
    "no seeds": (lambda u: post_seeds(u, {"seeds": []}), 422),
    "negative seed": (lambda u: post_seeds(u, {"seeds": [-1]}), 422),
    "seed not a number": (lambda u: post_seeds(u, {"seeds": ["abc"]}), 422),
    "too many seeds": (lambda u: post_seeds(u, {"seeds": list(range(9))}), 422),
    "absurd views": (lambda u: post_seeds(u, {"seeds": [1], "views": 100000}), 422),
    "zero views": (lambda u: post_seeds(u, {"seeds": [1], "views": 0}), 422),
    "absurd resolution": (lambda u: post_seeds(u, {"seeds": [1], "resolution": 10**6}), 422),
    "absurd mesh grid": (
        lambda u: post_seeds(u, {"seeds": [1], "mesh": True, "mesh_resolution": 4096}),
        422,
    ),  # fmt: skip
    "too many frames": (lambda u: post_seeds(u, {"seeds": [1], "frames": 1000}), 422),
    "unknown result": (lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}", timeout=30), 404),
    "malformed result id": (lambda u: requests.get(f"{u}/v1/avatars/abc", timeout=30), 404),
    "traversal in id": (
        lambda u: requests.get(f"{u}/v1/avatars/..%2F..%2Fetc%2Fpasswd", timeout=30),
        404,
    ),  # fmt: skip
    "traversal in file": (
        lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}/..%2Favatars.json", timeout=30),
        404,
    ),  # fmt: skip
    "manifest as a file": (
        lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}/avatars.json", timeout=30),
        404,
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_with_a_message_and_the_server_stays_healthy(served, case):
    send, status = BAD_REQUESTS[case]
    response = send(served.url)
    assert response.status_code == status, (case, response.status_code, response.text)
    message = response.json()["error"]
    assert isinstance(message, str) and len(message) > 20, response.text
    assert requests.get(f"{served.url}/healthz", timeout=10).status_code == 200


def test_after_every_bad_input_a_good_request_still_works(served):
    for send, _ in BAD_REQUESTS.values():
        send(served.url)
    response = post_seeds(served.url, {"seeds": [2], "views": 1, "turntable": False})
    assert response.status_code == 201, response.text


def test_the_api_key_guards_everything_but_healthz(served):
    keyed = served.keyed_url
    assert requests.get(f"{keyed}/healthz", timeout=10).status_code == 200
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        for response in (
            requests.get(f"{keyed}/v1/model", headers=headers, timeout=10),
            post_seeds(keyed, {"seeds": [1]}, headers=headers),
            requests.get(f"{keyed}/openapi.json", headers=headers, timeout=10),
        ):
            assert response.status_code == 401, response.text
            assert "API key" in response.json()["error"]
    ok = post_seeds(keyed, {"seeds": [1], "views": 1, "turntable": False},
                    headers={"X-API-Key": served.api_key})  # fmt: skip
    assert ok.status_code == 201, ok.text
    link = ok.json()["avatars"][0]["views_grid"]
    assert link.startswith("/keyed/v1/avatars/")
    host = keyed.rsplit("/keyed", 1)[0]
    assert requests.get(f"{host}{link}", timeout=10).status_code == 401
    assert requests.get(f"{host}{link}", headers={"Authorization": f"Bearer {served.api_key}"},
                        timeout=10).status_code == 200  # fmt: skip


def test_the_page_and_its_viewer_are_served_without_a_cdn(served):
    page = requests.get(f"{served.url}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    script = requests.get(f"{served.url}/static/app.js", timeout=10).text
    assert "static/vendor/model-viewer.min.js" in script
    viewer = requests.get(f"{served.url}/static/vendor/model-viewer.min.js", timeout=10)
    assert viewer.status_code == 200 and len(viewer.content) > 500_000
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from elsewhere


def test_results_are_written_whole_and_listed_by_id(served):
    response = post_seeds(served.url, {"seeds": [5], "views": 1, "turntable": False})
    result_id = response.json()["id"]
    folder = served.home / "results" / result_id
    manifest = json.loads((folder / "avatars.json").read_text())
    assert manifest["id"] == result_id
    assert not list((served.home / "results").glob(".*.partial"))


def test_a_full_queue_answers_503_with_retry_after_and_recovers(tight_url):
    from concurrent.futures import ThreadPoolExecutor

    body = {"seeds": [0], "views": 8, "turntable": True, "frames": 24}
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post_seeds(tight_url, body), range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert 201 in statuses and 503 in statuses, statuses
    assert set(statuses) == {201, 503}, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers.get("Retry-After") == "1" and "busy" in busy.json()["error"], (
        busy.headers,
        busy.text,
    )
    assert requests.get(f"{tight_url}/healthz", timeout=10).status_code == 200
    assert post_seeds(tight_url, {"seeds": [1], "views": 1, "turntable": False}).status_code == 201


def test_serve_request_downloads_a_whole_result_set(served, tmp_path, capsys):
    from avatar_platform.cli.app import main

    picture = tmp_path / "face.png"
    picture.write_bytes(png())
    out = tmp_path / "served"
    code = main(["serve", "request", "--url", served.url, "--image", str(picture),
                 "--num-samples", "2", "--views", "2", "--mesh-resolution", "32",
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "avatars.json").read_text())
    assert len(result["avatars"]) == 2
    for index in (0, 1):
        assert Image.open(out / f"avatar{index}-views.png").size[0] > 0
        mesh = trimesh.load(out / f"avatar{index}-mesh.glb", force="mesh")
        assert len(mesh.faces) == result["avatars"][index]["mesh_faces"]
        assert Image.open(out / f"avatar{index}-turntable.gif").n_frames == 24
    assert main(["serve", "request", "--url", served.url, "--image", str(tmp_path / "no.png"),
                 "--out", str(out)]) == 2  # fmt: skip


def test_a_request_over_the_time_limit_is_a_504_and_the_server_stays_healthy(impatient_url):
    response = post_seeds(impatient_url, {"seeds": [0, 1], "views": 8, "frames": 24})
    assert response.status_code == 504, response.text
    assert "took over" in response.json()["error"]
    assert requests.get(f"{impatient_url}/healthz", timeout=10).status_code == 200


def _running_model_replicas(app: str) -> int:
    from ray import serve

    states = serve.status().applications[app].deployments["AvatarModel"].replica_states
    return sum(count for state, count in states.items() if str(state).endswith("RUNNING"))


def test_sustained_load_scales_the_model_to_its_max_replicas(elastic):
    import threading
    import time

    url, app = elastic
    assert _running_model_replicas(app) == 1
    stop = threading.Event()

    def client():
        while not stop.is_set():
            post_seeds(url, {"seeds": [0], "views": 8, "frames": 24})

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        deadline = time.monotonic() + 120
        while _running_model_replicas(app) < 2:
            assert time.monotonic() < deadline, "no second replica after 120 s of load"
            time.sleep(1)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert _running_model_replicas(app) == 2  # max_replicas: never more
