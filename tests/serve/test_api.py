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
    response = requests.get(f"{url.split('/', 3)[0]}//{url.split('/', 3)[2]}{link}", timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response


def test_seeds_give_views_a_turntable_and_a_glb_that_trimesh_loads(served):
    body = {"seeds": [0, 7], "views": 3, "resolution": 48, "mesh": True, "mesh_resolution": 24, "frames": 6}
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
    from avatar_platform.pipelines.inference.pyfunc import AvatarRequest, load_model
    from avatar_platform.serve.avatars import render_jobs

    response = post_seeds(served.url, {"seeds": [3], "views": 2, "turntable": False})
    assert response.status_code == 201, response.text
    avatar = response.json()["avatars"][0]
    assert avatar["turntable"] is None and avatar["mesh"] is None
    job = AvatarRequest(seed=3, views=2, mesh_resolution=16)
    [[local]] = render_jobs(load_model(tiny_diffusion, device="cpu"), [job])
    served_views = [fetch(served.url, link).content for link in avatar["views"]]
    assert served_views == local.views


def test_an_uploaded_picture_becomes_avatars(served):
    response = upload(served.url, png(), fields={"num_samples": "2", "views": "2", "turntable": "false"})
    assert response.status_code == 201, response.text
    result = response.json()
    assert [(a["seed"], a["sample"]) for a in result["avatars"]] == [(None, 0), (None, 1)]
    assert result["options"]["num_samples"] == 2
    first, second = (fetch(served.url, a["views_grid"]).content for a in result["avatars"])
    assert first != second  # samples of one picture differ by their noise


def test_a_refined_upload_is_one_avatar_fitted_to_the_picture(served):
    fields = {
        "num_samples": "2",
        "views": "2",
        "turntable": "false",
        "refine": "6",
        "tune": "3",
        "mesh": "true",
    }
    response = upload(served.url, png(), fields=fields)
    assert response.status_code == 201, response.text
    result = response.json()
    assert [(a["seed"], a["sample"]) for a in result["avatars"]] == [(None, 0)]  # the best sample, fitted
    assert result["options"]["refine"] == 6 and result["options"]["tune"] == 3
    plain = upload(served.url, png(), fields={"num_samples": "2", "views": "2", "turntable": "false"}).json()
    refined = fetch(served.url, result["avatars"][0]["views_grid"]).content
    assert refined not in [fetch(served.url, a["views_grid"]).content for a in plain["avatars"]]
    assert fetch(served.url, result["avatars"][0]["mesh"]).content[:4] == b"glTF"


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
    # the open server never answers 401 (the keyed one does, see below) but 421 for a foreign Host
    assert {"413", "415", "421", "422"} <= set(create["responses"])


BIG = os.urandom(300 * 1024)  # over the fixture's 256 KiB upload limit


def _raw_json(url: str, text: str) -> requests.Response:
    return requests.post(
        f"{url}/v1/avatars", data=text, timeout=30, headers={"Content-Type": "application/json"}
    )


def _picture(size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


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
    "no image field": (lambda u: requests.post(f"{u}/v1/avatars", files={"x": ("a", b"1")}, timeout=30), 422),
    "unknown form field": (lambda u: upload(u, png(), fields={"colour": "red"}), 422),
    "refine over the server's limit": (lambda u: upload(u, png(), fields={"refine": "9"}), 422),
    "tune over the server's limit": (lambda u: upload(u, png(), fields={"tune": "5"}), 422),
    "negative refine": (lambda u: upload(u, png(), fields={"refine": "-1"}), 422),
    "refine for seeds": (lambda u: post_seeds(u, {"seeds": [1], "refine": 5}), 422),
    "wrong content type": (
        lambda u: requests.post(
            f"{u}/v1/avatars", data="seeds=1", headers={"Content-Type": "text/plain"}, timeout=30
        ),
        415,
    ),
    "malformed json": (
        lambda u: requests.post(
            f"{u}/v1/avatars", data="{seeds: [1", headers={"Content-Type": "application/json"}, timeout=30
        ),
        400,
    ),
    "json array": (lambda u: post_seeds(u, [1, 2]), 400),
    "deeply nested json": (lambda u: _raw_json(u, '{"seeds": ' + "[" * 1000 + "]" * 1000 + "}"), 400),
    "nested json, unclosed": (lambda u: _raw_json(u, "[" * 50_000), 400),
    "seed true": (lambda u: post_seeds(u, {"seeds": [True]}), 422),
    "seed as a string": (lambda u: post_seeds(u, {"seeds": ["5"]}), 422),
    "views as a string": (lambda u: post_seeds(u, {"seeds": [1], "views": "2"}), 422),
    "resolution with a fraction": (lambda u: post_seeds(u, {"seeds": [1], "resolution": 48.5}), 422),
    "seed of 2^63": (lambda u: post_seeds(u, {"seeds": [2**63]}), 422),
    "frames over the limit without a turntable": (
        lambda u: post_seeds(u, {"seeds": [1], "turntable": False, "frames": 25}),
        422,
    ),
    "upload of a text type": (lambda u: upload(u, png(), content_type="application/json"), 415),
    "pixels just over the limit": (lambda u: upload(u, _picture((2001, 2000))), 422),
    "unknown field": (lambda u: post_seeds(u, {"seeds": [1], "colour": "red"}), 422),
    "no seeds": (lambda u: post_seeds(u, {"seeds": []}), 422),
    "negative seed": (lambda u: post_seeds(u, {"seeds": [-1]}), 422),
    "seed not a number": (lambda u: post_seeds(u, {"seeds": ["abc"]}), 422),
    "too many seeds": (lambda u: post_seeds(u, {"seeds": list(range(9))}), 422),
    "absurd views": (lambda u: post_seeds(u, {"seeds": [1], "views": 100000}), 422),
    "zero views": (lambda u: post_seeds(u, {"seeds": [1], "views": 0}), 422),
    "absurd resolution": (lambda u: post_seeds(u, {"seeds": [1], "resolution": 10**6}), 422),
    "absurd mesh grid": (lambda u: post_seeds(u, {"seeds": [1], "mesh": True, "mesh_resolution": 4096}), 422),
    "too many frames": (lambda u: post_seeds(u, {"seeds": [1], "frames": 1000}), 422),
    "unknown result": (lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}", timeout=30), 404),
    "malformed result id": (lambda u: requests.get(f"{u}/v1/avatars/abc", timeout=30), 404),
    "traversal in id": (lambda u: requests.get(f"{u}/v1/avatars/..%2F..%2Fetc%2Fpasswd", timeout=30), 404),
    "traversal in file": (
        lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}/..%2Favatars.json", timeout=30),
        404,
    ),
    "manifest as a file": (
        lambda u: requests.get(f"{u}/v1/avatars/{'0' * 32}/avatars.json", timeout=30),
        404,
    ),
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
    ok = post_seeds(
        keyed, {"seeds": [1], "views": 1, "turntable": False}, headers={"X-API-Key": served.api_key}
    )
    assert ok.status_code == 201, ok.text
    link = ok.json()["avatars"][0]["views_grid"]
    assert link.startswith("/keyed/v1/avatars/")
    host = keyed.rsplit("/keyed", 1)[0]
    assert requests.get(f"{host}{link}", timeout=10).status_code == 401
    assert (
        requests.get(
            f"{host}{link}", headers={"Authorization": f"Bearer {served.api_key}"}, timeout=10
        ).status_code
        == 200
    )


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


def test_serve_request_downloads_a_whole_result_set(served, tmp_path, cli):
    picture = tmp_path / "face.png"
    picture.write_bytes(png())
    out = tmp_path / "served"
    request = ["serve", "request", "--url", served.url]
    code, _, err = cli(
        request, "--image", picture, "--num-samples 2 --views 2 --mesh-resolution 32 --out", out
    )
    assert code == 0, err
    result = json.loads((out / "avatars.json").read_text())
    assert len(result["avatars"]) == 2
    for index in (0, 1):
        assert Image.open(out / f"avatar{index}-views.png").size[0] > 0
        mesh = trimesh.load(out / f"avatar{index}-mesh.glb", force="mesh")
        assert len(mesh.faces) == result["avatars"][index]["mesh_faces"]
        assert Image.open(out / f"avatar{index}-turntable.gif").n_frames == 24
    assert cli(request, "--image", tmp_path / "no.png", "--out", out)[0] == 2


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


def test_the_pixel_limit_message_shows_two_different_numbers(served):
    response = upload(served.url, _picture((2001, 2000)))  # 4.002 MP; the fixture allows 4 MP
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert "4.002 megapixels" in message and "at most 4.000 megapixels" in message, message


@pytest.mark.parametrize("content_type", ["application/octet-stream", None])
def test_a_picture_sent_as_plain_bytes_or_untyped_is_taken_by_its_bytes(served, content_type):
    part = ("face", png()) if content_type is None else ("face", png(), content_type)
    response = requests.post(
        f"{served.url}/v1/avatars",
        files={"image": part},
        data={"views": "1", "turntable": "false"},
        timeout=120,
    )
    assert response.status_code == 201, response.text
    # ... and bytes that are no picture are still refused, as not a picture
    part = ("face", b"not a picture at all" * 8, *([content_type] if content_type else []))
    response = requests.post(f"{served.url}/v1/avatars", files={"image": part}, timeout=60)
    assert response.status_code == 422 and "not an image" in response.json()["error"]


def test_serve_request_sends_a_picture_file_without_an_extension(served, tmp_path, cli):
    picture = tmp_path / "face"
    picture.write_bytes(png())
    out = tmp_path / "served"
    code, _, err = cli(
        "serve request --url", served.url, "--image", picture, "--views 1 --no-mesh --no-turntable --out", out
    )
    assert code == 0, err
    assert Image.open(out / "avatar0-views.png").size[0] > 0


def test_a_default_over_the_servers_limit_is_lowered_to_it(served):
    # the fixture allows a 48 grid; the default is 64: a mesh without a grid gets 48
    response = post_seeds(served.url, {"seeds": [1], "views": 1, "turntable": False, "mesh": True})
    assert response.status_code == 201, response.text
    assert response.json()["options"]["mesh_resolution"] == served.config["max_mesh_resolution"]


def test_head_answers_like_get(served):
    for path in ("/", "/healthz"):
        response = requests.head(f"{served.url}{path}", timeout=10)
        assert response.status_code == 200, (path, response.status_code)


def test_without_a_key_only_requests_addressed_to_this_server_are_answered(served):
    port = served.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "app.localhost"):
        response = requests.get(f"{served.url}/v1/model", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, (host, response.text)
    # a page at evil.example whose name was rebound to 127.0.0.1 (DNS rebinding)
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        headers = {"Host": host}
        for response in (
            requests.get(f"{served.url}/v1/model", headers=headers, timeout=10),
            post_seeds(served.url, {"seeds": [1]}, headers=headers),
            requests.get(f"{served.url}/v1/avatars/{'0' * 32}", headers=headers, timeout=10),
            requests.get(f"{served.url}/openapi.json", headers=headers, timeout=10),
        ):
            assert response.status_code == 421, (host, response.status_code, response.text)
            assert "API key" in response.json()["error"]
    assert requests.get(f"{served.url}/healthz", headers=headers, timeout=10).status_code == 200
    # with a key, the key decides, whatever the name
    keyed = requests.get(
        f"{served.keyed_url}/v1/model",
        timeout=10,
        headers={"Host": "evil.example", "X-API-Key": served.api_key},
    )
    assert keyed.status_code == 200, keyed.text


def test_allowed_hosts_adds_names_to_an_unkeyed_server(variant):
    url = variant("named", allowed_hosts=["avatars.internal"])
    for host, status in (("avatars.internal:80", 200), ("evil.example", 421)):
        response = requests.get(f"{url}/v1/model", headers={"Host": host}, timeout=10)
        assert response.status_code == status, (host, response.text)


def test_serving_opens_no_port_beyond_loopback(served):
    import ipaddress

    import psutil

    me = psutil.Process()
    listeners = []
    for process in [me, *me.children(recursive=True)]:
        try:
            name = process.name()
            listeners += [
                (name, c.laddr.ip, c.laddr.port)
                for c in process.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
        except psutil.Error:
            continue
    port = int(served.url.rsplit(":", 1)[1])
    assert port in {p for _, _, p in listeners}, listeners  # the Serve proxy is among them

    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        return (getattr(address, "ipv4_mapped", None) or address).is_loopback

    assert not [entry for entry in listeners if not loopback(entry[1])], listeners


def test_the_spec_states_the_servers_limits_key_and_file_types(served):
    config = served.config
    spec = requests.get(f"{served.url}/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    seeds = schemas["SeedsRequest"]["properties"]
    assert seeds["seeds"]["maxItems"] == config["max_seeds"]
    assert seeds["seeds"]["items"]["exclusiveMaximum"] == 2**63  # exact as a float, too
    assert "maximum" not in seeds["seeds"]["items"]
    for field, limit in (
        ("views", "max_views"),
        ("resolution", "max_resolution"),
        ("frames", "max_frames"),
        ("mesh_resolution", "max_mesh_resolution"),
    ):
        for body in ("SeedsRequest", "ImageOptions"):
            assert schemas[body]["properties"][field]["maximum"] == config[limit], (body, field)
    assert seeds["mesh_resolution"]["default"] == config["max_mesh_resolution"]  # 64, lowered
    assert schemas["ImageOptions"]["properties"]["num_samples"]["maximum"] == config["max_seeds"]
    assert schemas["ImageOptions"]["required"] == ["image"]
    file = spec["paths"]["/v1/avatars/{result_id}/{name}"]["get"]["responses"]["200"]
    assert set(file["content"]) == {"image/png", "image/gif", "model/gltf-binary"}
    # the open server: no key scheme required, no 401; the keyed one: both
    assert "security" not in spec["paths"]["/v1/model"]["get"]
    assert "401" not in spec["paths"]["/v1/model"]["get"]["responses"]
    keyed = requests.get(
        f"{served.keyed_url}/openapi.json", timeout=30, headers={"X-API-Key": served.api_key}
    ).json()
    schemes = keyed["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    for path, operations in keyed["paths"].items():
        for operation in operations.values():
            if path == "/healthz":
                assert "security" not in operation
            else:
                assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}], path
                assert "401" in operation["responses"]
    assert keyed["servers"] == [{"url": "/keyed"}]


def test_result_sets_are_kept_within_a_byte_budget_oldest_first(served, variant, tmp_path):
    body = {"seeds": [4], "views": 1, "turntable": False}
    first = post_seeds(served.url, body).json()["id"]
    one_set = sum(f.stat().st_size for f in (served.home / "results" / first).iterdir())
    # room for two sets of this size, not three
    results = tmp_path / "budget-results"
    url = variant("budget", results_dir=str(results), max_results_bytes=int(one_set * 2.5))
    ids = [post_seeds(url, body).json()["id"] for _ in range(4)]
    kept = {p.name for p in results.iterdir() if not p.name.startswith(".")}
    assert kept == set(ids[-2:]), (kept, ids)
    assert requests.get(f"{url}/v1/avatars/{ids[0]}", timeout=10).status_code == 404
    assert requests.get(f"{url}/v1/avatars/{ids[-1]}", timeout=10).status_code == 200
    # a budget smaller than one set keeps the newest set whole
    tiny = tmp_path / "tiny-results"
    url = variant("tiny", results_dir=str(tiny), max_results_bytes=1)
    ids = [post_seeds(url, body).json()["id"] for _ in range(2)]
    assert [p.name for p in tiny.iterdir()] == [ids[-1]]
    result = requests.get(f"{url}/v1/avatars/{ids[-1]}", timeout=10).json()
    fetch(url, result["avatars"][0]["views_grid"])
