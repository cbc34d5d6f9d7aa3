"""The build task: a thin client of the API. It takes a build id, fetches the source, runs
the buildpacks in a build container and reports the slug. Idempotent, so acks_late is safe."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import redis

from paas.build.buildpacks import BuildFailed, BuildResult, build_app
from paas.build.celery_app import app as celery_app
from paas.client import ApiClient
from paas.logs import RedisEvents
from paas.runtime import Runtime
from paas.settings import Settings, load
from paas.slugs.layers import LayerStore

TERMINAL = {"succeeded", "failed"}


def service_client(settings: Settings) -> ApiClient:
    return ApiClient(settings.api_url, settings.service_token_path.read_text().strip())


def extract_source(data: bytes, dest: Path) -> None:
    """Unpacks the commit's tar; refuses paths that would leave `dest`."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        links: set[PurePosixPath] = set()
        for member in tar.getmembers():
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or any(p in links for p in path.parents):
                raise BuildFailed(f"the commit holds an unsafe path: {member.name}")
            if not (member.isfile() or member.isdir() or member.issym()):
                raise BuildFailed(f"the commit holds a special file: {member.name}")
            if member.issym():
                links.add(path)
        tar.extractall(dest)


def slug_of(result: BuildResult) -> dict:
    return {
        "layers": [{"name": layer.name, "digest": layer.digest, "reused": layer.reused}
                   for layer in result.layers],
        "process_types": result.process_types,
        "env": result.env,
        "buildpacks": result.buildpacks,
    }


def run(build_id: str, settings: Settings) -> None:
    api = service_client(settings)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    events = RedisEvents(client)
    try:
        info = api.get(f"/v1/internal/builds/{build_id}")
        if info["status"] in TERMINAL:
            return
        api.post(f"/v1/internal/builds/{build_id}/start")
        log = lambda line: events.deploy_line(build_id, line)  # noqa: E731
        # One build of an app at a time: builds share the app's build cache.
        cache_lock = client.lock(f"paas:build-cache:{info['app']}",
                                 timeout=settings.build_timeout + 120)
        if not cache_lock.acquire(blocking=False):
            log("-----> Waiting for the app's previous build to finish")
            cache_lock.acquire(blocking_timeout=settings.build_timeout + 120)
        try:
            slug = slug_of(_build(build_id, info, settings, api, log))
        except BuildFailed as failure:
            _fail(api, build_id, log, str(failure))
            return
        except Exception as error:  # the task boundary: the pusher must hear of any crash
            _fail(api, build_id, log, f"the build crashed ({type(error).__name__}: {error})")
            raise
        finally:
            if cache_lock.owned():
                cache_lock.release()
        log("-----> Build succeeded")
        api.post(f"/v1/internal/builds/{build_id}/result", {"status": "succeeded", "slug": slug})
    finally:
        api.close()


def _fail(api: ApiClient, build_id: str, log, message: str) -> None:  # type: ignore[no-untyped-def]
    log(f" !     {message}")
    api.post(f"/v1/internal/builds/{build_id}/result", {"status": "failed", "error": message})


def _build(build_id: str, info: dict, settings: Settings, api: ApiClient, log) -> BuildResult:  # type: ignore[no-untyped-def]
    settings.builds_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{build_id}-", dir=settings.builds_dir))
    try:
        source = work / "source"
        source.mkdir()
        extract_source(api.http.get(f"/v1/internal/builds/{build_id}/source").content, source)
        log(f"-----> Building {info['app']} from {info['commit'][:7]}")
        return build_app(
            source=source,
            cache_dir=settings.home / "cache" / info["app"],
            uid=info["uid"],
            config_vars=info["config"],
            settings=settings,
            runtime=Runtime(settings),
            store=LayerStore(settings),
            log=log,
            previous_digests=set(info["previous_layers"]),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@celery_app.task(name="paas.build.tasks.build")
def build(build_id: str) -> None:
    run(build_id, load())
