"""The Serve application: a FastAPI ingress (API, result files, web page) in front of the
model deployment. `build_app(args)` is the application builder that `avatar-platform serve`
and a Serve config's `import_path` use.

Every request is checked here, once: bad input is a 4xx with one message, never a 500.
"""

# no `from __future__ import annotations`: FastAPI must see the route annotations as types
import asyncio
import contextlib
import copy
import hmac
import json
import os
import socket
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from avatar_platform import __version__
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.ray_runtime import is_loopback
from avatar_platform.pipelines.inference.pyfunc import AvatarRequest
from avatar_platform.serve.config import ServeConfig
from avatar_platform.serve.loopback import keep_replica_grpc_on_loopback
from avatar_platform.serve.model_deployment import AvatarModel
from avatar_platform.serve.results import MEDIA_TYPES, ResultStore, avatar_files
from avatar_platform.serve.schemas import (
    AvatarOptions,
    AvatarSet,
    ErrorBody,
    ImageOptions,
    ModelInfo,
    SeedsRequest,
    check_limits,
    limits_schema,
    within_limits,
)

STATIC = Path(str(resources.files("avatar_platform.serve").joinpath("static")))
MAX_JSON_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # form fields and part headers around the picture
# an upload's part may say image/… (any: the bytes decide which), say nothing or be plain bytes
# (what `curl -F image=@face` and files without an extension send); other types are refused
GENERIC_TYPES = ("", "application/octet-stream")
API_KEY_HEADER = "X-API-Key"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
INTEGER_FIELDS = ("views", "resolution", "mesh_resolution", "frames")


class ApiError(Exception):
    """A request the API refuses: an HTTP status and one message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "malformed request"),
        (401, "missing or wrong API key"),
        (404, "unknown result"),
        (413, "upload too large"),
        (415, "unsupported content type"),
        (421, "the Host header names another server (a server without an API key)"),
        (422, "invalid values"),
        (503, "busy: retry later"),
        (504, "took longer than the server's request timeout"),
    )
}

api = FastAPI(
    title="avatar-platform",
    version=__version__,
    description="StyleAvatar3D avatars from seeds or pictures: views, turntables and meshes.",
    docs_url=None,  # FastAPI's docs pages load their scripts from a CDN; the spec is served
    redoc_url=None,
    openapi_url=None,  # served by the ingress below, behind the API key
)
api.mount("/static", StaticFiles(directory=STATIC), name="static")


@api.exception_handler(ApiError)
async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)


@api.exception_handler(StarletteHTTPException)
async def _no_route(request: Request, err: StarletteHTTPException) -> JSONResponse:
    # starlette's own 404/405 say only "Not Found": say what exists instead
    message = f"{err.detail}: {request.method} {request.url.path[:200]}"
    if err.status_code == 404:
        message += "; the API is POST /v1/avatars, GET /v1/avatars/{id}[/file], GET /v1/model"
    return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)


@api.exception_handler(RequestValidationError)
async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": _validation_message(err.errors())}, status_code=422)


def _validation_message(errors) -> str:
    """pydantic's errors as one line: `views: Input should be greater than or equal to 1`."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
        message = "unknown field" if error.get("type") == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _whole_numbers(data: dict) -> dict:
    """The JSON body with whole floats (2.0) in integer fields as ints (2)."""

    def whole(value):
        return int(value) if isinstance(value, float) and value.is_integer() else value

    data = {key: whole(value) if key in INTEGER_FIELDS else value for key, value in data.items()}
    if isinstance(data.get("seeds"), list):
        data["seeds"] = [whole(seed) for seed in data["seeds"]]
    return data


def _host_name(header: str) -> str:
    """The name or IP of a Host header, without port or brackets: `[::1]:8000` → `::1`."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _served_names(config: ServeConfig) -> set[str]:
    """Host names an unkeyed server answers besides loopback: its `host`, for a wildcard host
    this machine's name and interface addresses, and `allowed_hosts`."""
    names = {_host_name(name) for name in config.allowed_hosts}
    if config.host not in WILDCARD_HOSTS:
        names.add(_host_name(config.host))
        return names
    import psutil

    names.add(socket.gethostname().lower())
    for addresses in psutil.net_if_addrs().values():
        names.update(
            a.address.split("%", 1)[0].lower()
            for a in addresses
            if a.family in (socket.AF_INET, socket.AF_INET6)
        )
    return names


SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "the server's key (AVATAR_API_KEY where it runs)",
    },
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the same key as `Authorization: Bearer <key>`",
    },
}
PUBLIC_PATHS = ("/healthz",)
FILE_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("image/png", "image/gif", "model/gltf-binary")
}


def _instance_spec(spec: dict, config: ServeConfig, keyed: bool, root: str) -> dict:
    """The spec of one deployment: its limits on the request fields, its API key scheme."""
    spec = copy.deepcopy(spec)
    components = spec.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    bounds = limits_schema(config)
    for name in ("SeedsRequest", "ImageOptions"):
        for field, schema in components["schemas"][name]["properties"].items():
            limits = bounds.get(field, {})
            schema.update(limits)
            for branch in schema.get("anyOf", []):  # an optional field's bounds sit in its branch
                if "maximum" in branch and "maximum" in limits:
                    branch["maximum"] = limits["maximum"]
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if keyed and path not in PUBLIC_PATHS:
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
            elif not keyed:
                operation["responses"].pop("401", None)
            if keyed:
                operation["responses"].pop("421", None)
    if root:
        spec["servers"] = [{"url": root}]
    return spec


def _request_body_spec() -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SeedsRequest"}},
                "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ImageOptions"}},
            },
        }
    }


def _openapi() -> dict:
    """FastAPI's spec plus the two request bodies, which the route reads itself."""
    if api.openapi_schema is None:
        spec = FastAPI.openapi(api)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (SeedsRequest, ImageOptions):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas[model.__name__] = body
        form = schemas["ImageOptions"]
        for field in form["properties"].values():
            # a form field is text: it can be left out, never null
            options = [branch for branch in field.pop("anyOf", []) if branch != {"type": "null"}]
            field.update(options[0] if len(options) == 1 else {})
            if field.get("default", 0) is None:
                del field["default"]
        form["properties"] = {
            "image": {
                "type": "string",
                "format": "binary",
                "description": "the picture: PNG, JPEG or WebP (BMP, GIF, TIFF also work)",
            },
            **form["properties"],
        }
        form["required"] = ["image"]
        api.openapi_schema = spec
    return api.openapi_schema


api.openapi = _openapi


@serve.deployment(name="AvatarIngress", ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class AvatarIngress:
    def __init__(self, model: DeploymentHandle, args: dict, api_key: str | None = None) -> None:
        from avatar_platform.core.paths import platform_home

        keep_replica_grpc_on_loopback()
        self.config = ServeConfig.model_validate(args)
        self.model = model
        self.api_key = api_key or os.environ.get(self.config.api_key_env) or None
        self.hosts = _served_names(self.config)
        root = self.config.results_dir or platform_home() / "serve" / "results"
        self.store = ResultStore(Path(root), self.config.max_results, self.config.max_results_bytes)
        self._info: ModelInfo | None = None
        self._info_lock = asyncio.Lock()

    # -- checks ------------------------------------------------------------------------------

    def _check_host(self, request: Request) -> None:
        """Without an API key, answer only requests addressed to this server by a name that
        an attacker's DNS cannot hand out: a web page at evil.example whose name is rebound
        to 127.0.0.1 sends `Host: evil.example`, and gets nothing."""
        if self.api_key is not None or "*" in self.config.allowed_hosts:
            return
        host = _host_name(request.headers.get("host", ""))
        if is_loopback(host) or host.endswith(".localhost") or host in self.hosts:
            return
        raise ApiError(
            421,
            f"this server has no API key and answers only requests addressed to "
            f"localhost, a loopback IP or its own names, not Host '{host[:100]}'; set "
            f"{self.config.api_key_env} where it runs, or list the name in allowed_hosts",
        )

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            self._check_host(request)
            return
        given = request.headers.get(API_KEY_HEADER, "")
        bearer = request.headers.get("authorization", "")
        if not given and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise ApiError(
                401,
                f"{'a wrong' if given else 'no'} API key; expected the server's key in the "
                f"{API_KEY_HEADER} header (or Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _declared_length(self, request: Request, limit: int, what: str) -> None:
        length = request.headers.get("content-length")
        if length is None:
            if request.headers.get("transfer-encoding"):
                raise ApiError(411, f"{what} without a Content-Length; send the body whole")
            return
        if not length.isdigit():
            raise ApiError(400, f"Content-Length is '{length}', expected a number of bytes")
        if int(length) > limit:
            raise ApiError(413, f"{what} is {int(length)} bytes; this server takes at most {limit}")

    async def _model_info(self) -> ModelInfo:
        # asked once (under a lock, so a burst of first requests asks once) and kept: every
        # replica loads the same version, which the model deployment pins at start
        async with self._info_lock:
            if self._info is None:
                [info] = await self._answer(lambda: [self.model.info.remote()])
                self._info = ModelInfo.model_validate(info)
        return self._info

    async def _seeds(self, request: Request) -> tuple[AvatarOptions, list[AvatarRequest]]:
        self._declared_length(request, MAX_JSON_BYTES, "the JSON body")
        body = await request.body()
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, f"the JSON body is over {MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"the body is not valid JSON ({err})") from None
        except RecursionError:
            raise ApiError(
                400,
                'the JSON body is nested too deeply; a request is one flat object like {"seeds": [0, 1], "views": 4}',
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                400,
                f'the JSON body is a {type(data).__name__}, expected an object like {{"seeds": [0, 1], "views": 4}}',
            )
        try:
            # strict: JSON has types, and `true` or "5" is not a number of views or a seed;
            # but 2.0 is an integer, as JSON Schema (and so the spec) has it
            options = SeedsRequest.model_validate(_whole_numbers(data), strict=True)
        except ValidationError as err:
            raise ApiError(422, _validation_message(err.errors())) from None
        except RecursionError:
            raise ApiError(400, "the JSON body is nested too deeply") from None
        options = within_limits(options, self.config)
        self._check_limits(options, len(options.seeds))
        return options, [AvatarRequest.from_spec(options, seed=seed) for seed in options.seeds]

    async def _upload(self, request: Request) -> tuple[AvatarOptions, list[AvatarRequest]]:
        from starlette.datastructures import UploadFile

        from avatar_platform.formats.pictures import load_image

        limit = self.config.max_upload_bytes
        self._declared_length(request, limit + MULTIPART_OVERHEAD, "the upload")
        try:
            form = await request.form(max_files=1, max_fields=32, max_part_size=limit)
        except Exception as err:  # starlette's parser raises its own types for broken forms
            raise ApiError(400, f"cannot read the multipart form ({err})") from None
        fields = {k: v for k, v in form.multi_items() if k != "image"}
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "no file in the form field 'image'; upload the picture there")
        kind = (upload.content_type or "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind in GENERIC_TYPES):
            raise ApiError(
                415,
                f"the upload's content type is '{kind}', expected a picture: image/png, "
                "image/jpeg, image/webp (or application/octet-stream: the bytes decide)",
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"the picture is over {limit} bytes (this server's limit)")
        try:
            options = ImageOptions.model_validate(fields)
        except ValidationError as err:
            raise ApiError(422, _validation_message(err.errors())) from None
        options = within_limits(options, self.config)
        self._check_limits(options)
        if not (await self._model_info()).image_conditioning:
            raise ApiError(
                422,
                "the live model has no image conditioning (a generator-only package); send seeds as JSON instead",
            )
        try:
            await asyncio.to_thread(
                load_image,
                data,
                name="the uploaded picture",
                max_bytes=limit,
                max_pixels=self.config.max_pixels,
            )
        except AvatarPlatformError as err:
            raise ApiError(422, err.message) from None
        return options, [AvatarRequest.from_spec(options, image=data)]

    def _check_limits(self, options: AvatarOptions, seeds: int = 0) -> None:
        problems = check_limits(options, self.config, seeds)
        if problems:
            raise ApiError(422, "; ".join(problems))

    async def _answer(self, calls):
        """The results of the model calls that `calls()` makes, in order; a full queue is a 503
        and a slow answer a 504, and then the calls still running are cancelled."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        responses = []
        try:
            responses = calls()
            return await asyncio.wait_for(asyncio.gather(*responses), self.config.request_timeout_s)
        except TimeoutError:
            error = ApiError(
                504,
                f"the avatars took over {self.config.request_timeout_s:g} s; ask for fewer seeds, views or frames",
            )
        except BackPressureError:
            error = ApiError(
                503,
                "every model replica is busy and its queue is full; retry shortly",
                headers={"Retry-After": "1"},
            )
        except RayActorError:
            # the replica died with the request on it (its node went away): Serve starts another
            error = ApiError(
                503,
                "the model replica working on this request was lost (its node went away); "
                "retry shortly, another replica takes it",
                headers={"Retry-After": "2"},
            )
        for response in responses:
            # a refused call re-raises its refusal when cancelled: nothing is left to stop there
            with contextlib.suppress(Exception):
                response.cancel()
        raise error

    # -- routes ------------------------------------------------------------------------------

    @api.get("/healthz", summary="liveness (no API key)")
    @api.head("/healthz", include_in_schema=False)
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get(
        "/v1/model",
        response_model=ModelInfo,
        responses=ERRORS,
        summary="the live model and its registered version",
    )
    async def model_info(self, request: Request) -> ModelInfo:
        self._authorize(request)
        return await self._model_info()

    @api.post(
        "/v1/avatars",
        status_code=201,
        response_model=AvatarSet,
        responses=ERRORS,
        openapi_extra=_request_body_spec(),
        summary="avatars from seeds (JSON) or from a picture (multipart, field `image`)",
    )
    async def create(self, request: Request) -> AvatarSet:
        self._authorize(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            options, jobs = await self._seeds(request)
        elif content_type == "multipart/form-data":
            options, jobs = await self._upload(request)
        else:
            raise ApiError(
                415,
                f"content type '{content_type or 'none'}'; expected "
                "application/json (seeds) or multipart/form-data (a picture "
                "in the field 'image')",
            )
        info = await self._model_info()
        batches = await self._answer(lambda: [self.model.remote(job) for job in jobs])
        rendered = [avatar for batch in batches for avatar in batch]
        result_id = self.store.new_id()
        base = f"{request.scope.get('root_path', '').rstrip('/')}/v1/avatars/{result_id}"
        files: dict[str, bytes] = {}
        avatars = []
        for index, avatar in enumerate(rendered):
            names = avatar_files(index, avatar)
            files.update(names)
            link = {name.split("-", 1)[1].rsplit(".", 1)[0]: f"{base}/{name}" for name in names}
            avatars.append(
                {
                    "index": index,
                    "seed": avatar.seed,
                    "sample": avatar.sample,
                    "views": [link[f"view{v}"] for v in range(len(avatar.views))],
                    "views_grid": link["views"],
                    "turntable": link.get("turntable"),
                    "mesh": link.get("mesh"),
                    "mesh_faces": avatar.mesh_faces,
                }
            )
        result = AvatarSet(
            id=result_id,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            model=info,
            options=options.model_dump(),
            avatars=avatars,
            links={"self": base},
        )
        await asyncio.to_thread(self.store.save, result_id, files, result.model_dump())
        return result

    @api.get(
        "/v1/avatars/{result_id}", response_model=AvatarSet, responses=ERRORS, summary="a result set again"
    )
    async def result(self, result_id: str, request: Request) -> AvatarSet:
        self._authorize(request)
        manifest = self.store.manifest(result_id)
        if manifest is None:
            raise ApiError(404, f"no result '{result_id[:40]}'; ids are 32 hex digits from POST /v1/avatars")
        return AvatarSet.model_validate(manifest)

    @api.get(
        "/v1/avatars/{result_id}/{name}",
        response_class=Response,
        responses={200: {"description": "the file", "content": FILE_CONTENT}, **ERRORS},
        summary="a file of a result set: views (PNG), turntable (GIF), mesh (GLB)",
    )
    async def result_file(self, result_id: str, name: str, request: Request) -> Response:
        self._authorize(request)
        path = self.store.file(result_id, name)
        if path is None:
            raise ApiError(404, f"no file '{name[:80]}' in result '{result_id[:40]}'")
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[path.suffix[1:]],
            headers={"Cache-Control": "private, max-age=86400, immutable"},
        )

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        self._authorize(request)
        root = request.scope.get("root_path", "").rstrip("/")
        return JSONResponse(_instance_spec(api.openapi(), self.config, self.api_key is not None, root))

    @api.get("/", include_in_schema=False)
    @api.head("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        # the page itself carries no data: a browser cannot add a key header to a page load,
        # so the page asks for the key and sends it with each API call
        return FileResponse(STATIC / "index.html", media_type="text/html")


def build_app(args: dict) -> serve.Application:
    """The Serve application for `args` (the fields of ServeConfig; `api_key` optionally, which
    is never written into a config file)."""
    args = dict(args)
    api_key = args.pop("api_key", None)
    try:
        config = ServeConfig.model_validate(args)
    except ValidationError as err:
        raise AvatarPlatformError(
            f"invalid serve arguments: {_validation_message(err.errors())}",
            expected=f"fields of ServeConfig: {', '.join(ServeConfig.model_fields)}",
        ) from None
    if not config.model:
        raise AvatarPlatformError(
            "no model to serve",
            expected="`model`: a model folder or MLflow URI",
            fix="pass --model models:/styleavatar3d@champion (or a `train` output folder)",
        )
    model = AvatarModel.options(
        autoscaling_config=config.autoscaling_config(),
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
    ).bind(config.model_dump())
    return AvatarIngress.options(max_ongoing_requests=max(64, 4 * config.max_queued_requests)).bind(
        model, config.model_dump(), api_key
    )
