"""The build task: a thin client of the API. It takes a build id, fetches the source, runs
the buildpacks in a build container and reports the slug. Idempotent, so acks_late is safe."""

from __future__ import annotations

import errno
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
from celery.signals import worker_ready

from paas import appjson, redis_clients, wire
from paas.builder import disk, lease
from paas.builder import source as source_
from paas.builder.buildpacks import BuildFailed, BuildResult, build_app
from paas.builder.celery_app import app as celery_app
from paas.builder.orphans import remove_orphans
from paas.client import ApiClient
from paas.errors import Conflict, PaasError, Unavailable
from paas.logs import RedisEvents
from paas.runtime import Runtime
from paas.settings import Settings, load
from paas.sizes import SIZES
from paas.slugs.layers import LayerStore
from paas.sourcetree import SourceLimits

TERMINAL = {"succeeded", "failed"}
# Deliveries older than this worker were made to a worker now dead (or to another live one).
WORKER_STARTED = time.time()
# How long a finished build waits for the API to come back (a restart) to report its outcome.
API_PATIENCE = 120.0


def service_client(settings: Settings) -> ApiClient:
    return ApiClient(settings.api_url, settings.service_token_path.read_text().strip())


def slug_of(result: BuildResult, app_json: wire.AppJson) -> wire.Slug:
    return wire.Slug(
        layers=tuple(wire.SlugLayer(digest=layer.digest, name=layer.name, reused=layer.reused,
                                    size=layer.size) for layer in result.layers),
        process_types=result.process_types, env=result.env,
        buildpacks=tuple(result.buildpacks), manifest=result.manifest or None,
        app_json=app_json)


def build_info(api: ApiClient, build_id: str) -> wire.BuildInfo:
    return wire.BuildInfo.from_json(api.get(f"/v1/internal/builds/{build_id}"))


def run(build_id: str, settings: Settings) -> None:
    api = service_client(settings)
    client = redis_clients.client(settings.redis_url, decode_responses=True)
    interval = settings.build_heartbeat
    build_lease = lease.make_lock(client, lease.lease_key(build_id), interval)
    try:
        _sweep_orphans(settings)
        if build_info(api, build_id).status in TERMINAL:
            return
        # A redelivered task waits for the lease of an earlier delivery: a live worker keeps
        # refreshing it (this delivery is a duplicate: drop it), a dead one's expires (take
        # the build over).
        if not lease.acquire(build_lease, wait=lease.ttl(interval) + interval):
            return
        with lease.Heartbeat([build_lease], interval) as beat:
            _run_leased(build_id, settings, api, client, beat)
    except Exception as error:
        # The reaper watches building builds only: one that never started would stay pending,
        # and its pusher would wait for ever.
        fail_if_unstarted(api, BuildLog(RedisEvents(client), build_id, patience=2), build_id,
                          error)
        raise
    finally:
        api.close()


def _sweep_orphans(settings: Settings) -> None:
    """A dead worker's leftovers go; failing to remove them never fails this build."""
    try:
        remove_orphans(settings)
    except Exception as error:
        print(f"worker: orphan sweep skipped ({type(error).__name__}: {error})", flush=True)


def fail_if_unstarted(api: ApiClient, log: Callable[[str], None], build_id: str,
                      error: Exception) -> None:
    """Fails a build still pending after its task raised: nobody else will. A build another
    delivery is running (building) is left to it."""
    try:
        if build_info(api, build_id).status != "pending":
            return
        _fail(api, build_id, log, f"the build could not start ({type(error).__name__}: "
              f"{error}); push again, and tell the operator if it keeps happening")
    except Exception:  # the API is unreachable too: nothing more can be done from here
        return


def _run_leased(build_id: str, settings: Settings, api: ApiClient, client: redis.Redis,
                beat: lease.Heartbeat) -> None:
    log = BuildLog(RedisEvents(client), build_id)
    info = build_info(api, build_id)
    if info.status in TERMINAL:  # the reaper failed it while this delivery waited
        return
    if info.status == "building":
        log("-----> Building again: the worker that started this build was lost")
    api.post(f"/v1/internal/builds/{build_id}/start")
    # One build of an app at a time: builds share the app's build cache.
    cache_key = f"paas:build-cache:{info.app}"
    cache_lock = lease.make_lock(client, cache_key, settings.build_heartbeat)
    if not lease.acquire(cache_lock, wait=0):
        log("-----> Waiting for the app's previous build to finish")
        if not lease.acquire(cache_lock, wait=settings.build_timeout + 120):
            _fail(api, build_id, log, "the app's previous build never finished; push again")
            return
    beat.keep(cache_lock)
    try:
        result, app_json = _build(build_id, info, settings, api, log)
        slug = slug_of(result, app_json)
    except BuildFailed as failure:
        _fail(api, build_id, log, str(failure))
        return
    except OSError as error:
        if error.errno != errno.ENOSPC:
            _fail(api, build_id, log, f"the build crashed ({type(error).__name__}: {error})")
            raise
        _fail(api, build_id, log, "the platform's disk is full (no space left on device "
              f"under {settings.home}); the app keeps its current release. Ask the operator "
              "to free space (`paas slugs:gc` drops unused layers), then push again")
        return
    except Exception as error:  # the task boundary: the pusher must hear of any crash
        _fail(api, build_id, log, f"the build crashed ({type(error).__name__}: {error})")
        raise
    finally:
        lease.release(cache_lock)
    log("-----> Build succeeded")
    _report(api, build_id, wire.BuildResult(status="succeeded", slug=slug))
    _collect_garbage(api, log)


class BuildLog:
    """The build's output stream. A line waits out a short Redis outage (a restart), then is
    dropped: losing a line of output must not fail the build."""

    def __init__(self, events: RedisEvents, build_id: str, patience: float = 10) -> None:
        self.events = events
        self.build_id = build_id
        self.patience = patience

    def __call__(self, line: str) -> None:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                self.events.deploy_line(self.build_id, line)
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.5)


def _report(api: ApiClient, build_id: str, outcome: wire.BuildResult) -> None:
    """Posts the build's outcome, waiting out an API restart. A Conflict means the build is
    already terminal (the reaper failed it, or an earlier post went through): nothing to do."""
    deadline = time.monotonic() + API_PATIENCE
    while True:
        try:
            api.post(f"/v1/internal/builds/{build_id}/result", outcome.to_json())
            return
        except Conflict:
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _collect_garbage(api: ApiClient, log) -> None:  # type: ignore[no-untyped-def]
    """Layers no longer named by the last releases go (a failure here never fails a deploy)."""
    try:
        api.post("/v1/internal/slugs/gc")
    except Exception as error:  # best effort
        log(f"       (layer garbage collection skipped: {error})")


def _fail(api: ApiClient, build_id: str, log, message: str) -> None:  # type: ignore[no-untyped-def]
    log(f" !     {message}")
    _report(api, build_id, wire.BuildResult(status="failed", error=message))


def read_app_json(source: Path) -> wire.AppJson:
    """The source's app.json as the platform reads it (the defaults without one)."""
    path = source / "app.json"
    if path.is_symlink() or not path.is_file():
        return wire.AppJson()
    try:
        return wire.AppJson.from_json(appjson.parse(path.read_text(errors="replace"),
                                                    set(SIZES)))
    except PaasError as error:
        raise BuildFailed(error.message) from None


def _build(build_id: str, info: wire.BuildInfo, settings: Settings, api: ApiClient,  # type: ignore[no-untyped-def]
           log) -> tuple[BuildResult, wire.AppJson]:
    settings.builds_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{build_id}-", dir=settings.builds_dir))
    with disk.held(work):
        try:
            return _build_from(work, build_id, info, settings, api, log)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build_from(work: Path, build_id: str, info: wire.BuildInfo, settings: Settings,  # type: ignore[no-untyped-def]
                api: ApiClient, log) -> tuple[BuildResult, wire.AppJson]:
    source = work / "source"
    source.mkdir()
    source_.download(api, build_id, source, SourceLimits.of(settings))
    log(f"-----> Building {info.app} from {info.commit[:7]}")
    app_json = read_app_json(source)
    return build_app(
        source=source,
        cache_dir=settings.home / "cache" / info.app,
        uid=info.uid,
        config_vars=info.config,
        settings=settings,
        runtime=Runtime(settings),
        store=LayerStore(settings),
        log=log,
        previous_digests=set(info.previous_layers),
        labels={"io.paas.app": info.app, "io.paas.commit": info.commit,
                "io.paas.build": build_id},
    ), app_json


@worker_ready.connect
def _at_start(**_kwargs: object) -> None:
    """Build containers of a worker that died before this one started are not anyone's, and
    the builds it had taken are delivered again at once (not after the broker's visibility
    timeout): each is built again once its lease expired."""
    remove_orphans(load(), log=_say)
    restored = redeliver_lost(WORKER_STARTED)
    if restored:
        _say(f"delivering again {restored} build(s) taken by a worker that is gone")


def _say(line: str) -> None:
    print(f"worker: {line}", flush=True)


def redeliver_lost(before: float) -> int:
    """Puts the deliveries made before `before` and never acknowledged back in the queue. One
    a live worker still holds is dropped by the lease when it comes again (a duplicate), so
    this is safe with more than one worker."""
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        qos = channel.qos
        tags = channel.client.zrange(qos.unacked_index_key, 0, before, byscore=True)
        for tag in tags:
            qos.restore_by_tag(tag, channel.client)
        return len(tags)


@celery_app.task(name="paas.build.tasks.build")
def build(build_id: str) -> None:
    run(build_id, load())
