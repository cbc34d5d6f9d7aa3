"""The buildpack runner: detect and build an app with Cloud Native Buildpacks in build containers.

Inside every build container (paths the same as in the dynos later):

    /app                        the workspace: the exported commit, read-write
    /app/.layers/<bp>           the buildpack's layers dir, bound from the app's build cache
    /platform/env/<KEY>         the config vars, read-only (never put in the process env)
    /cnb/buildpacks/<bp>        the buildpack itself, read-only
    /cnb/plan                   build plan files
    /cnb/tools/uv               the platform's uv, read-only ($PAAS_UV; paas/builder/tools.py)

<bp> is the buildpack id with "/" replaced by "_". Layers marked launch=true go into the layer
store; layers marked cache=true stay in the build cache for the next build.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from paas import safefs
from paas.builder import classic, disk, layerenv, tools
from paas.builder.cnb import (
    WHAT_THEY_DETECT,
    Buildpack,
    BuildpackError,
    Kind,
    default_order,
    detect_on_host,
    project_buildpacks,
    read_inside,
)
from paas.builder.procfile import parse_procfile
from paas.builder.stack import stack_id
from paas.errors import Invalid
from paas.runtime import BuildContainerSpec, Runtime
from paas.runtime.buildnet import BuildNetwork
from paas.settings import Settings
from paas.slugs.layers import LayerStore, StoredLayer

APP_DIR = "/app"
LAYERS_DIR = "/app/.layers"
PLATFORM_DIR = "/platform"
BUILDPACKS_DIR = "/cnb/buildpacks"
PLAN_DIR = "/cnb/plan"
ADAPTER_MOUNT = "/cnb/adapter"
DETECT_PASS, DETECT_FAIL = 0, 100
TIMEOUT_EXIT, KILLED_EXIT = 124, 137
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEEP_IN_CACHE = {"store.toml"}
_NOT_IN_SLUG = frozenset({".layers", ".git"})
# Sourced before every process when the app has a .profile.d (Heroku runs these at dyno start).
PROFILE_PREFIX = 'for f in /app/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done; '


@dataclass(frozen=True)
class Layer:
    name: str
    digest: str
    reused: bool
    size: int = 0


@dataclass(frozen=True)
class BuildResult:
    layers: list[Layer]
    process_types: dict[str, str]
    env: dict[str, str]
    buildpacks: list[str]
    manifest: str = ""


class BuildFailed(Exception):
    """The build cannot go on; the message is shown to the pusher."""


@contextmanager
def unsafe_as_failure(bp: Buildpack | None, shown_under: str) -> Iterator[None]:
    """A symlink or special file that a build step left where the platform reads or writes
    fails the build, named as the build sees it (under shown_under)."""
    try:
        yield
    except safefs.UnsafePath as err:
        who = f"buildpack {bp.id}" if bp else "the build"
        raise BuildFailed(
            f"{who} left {shown_under}/{err.rel} in a state the platform refuses: it "
            f"{err.reason}. The platform never follows a symlink, opens a special file or "
            "reads an oversized file that a build made there; write a plain file instead."
        ) from None


@dataclass
class _Build:
    settings: Settings
    runtime: Runtime
    log: Callable[[str], None]
    uid: int
    cache_dir: Path
    root: Path
    deadline: float
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    config_vars: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    group: list[Buildpack] | None = None
    before_classic: dict[str, classic.Signature] | None = None
    oom_kills: int = 0  # of the last step
    network: BuildNetwork | None = None
    said_no_space: bool = False  # the last step's output said "No space left on device"

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    @property
    def platform_dir(self) -> Path:
        return self.root / "platform"

    @property
    def plan_dir(self) -> Path:
        return self.root / "plan"

    def layers_host(self, bp: Buildpack) -> Path:
        return self.cache_dir / bp.dirname

    def make_layers_dirs(self, bp: Buildpack) -> None:
        """The buildpack's layers dir in the cache, and its mount point in the workspace,
        where an earlier step may have put a symlink: neither is followed."""
        safefs.make_dirs(self.cache_dir, bp.dirname)
        with unsafe_as_failure(bp, APP_DIR):
            safefs.make_dirs(self.app_dir, f".layers/{bp.dirname}")

    def run(
        self,
        bp: Buildpack,
        group: list[Buildpack],
        command: list[str],
        env: dict[str, str],
        on_line: Callable[[str], None],
    ) -> int:
        self.steps += 1
        self.said_no_space = False  # an earlier step's ENOSPC, retried or cleaned up, is past
        own = f"{BUILDPACKS_DIR}/{bp.dirname}"
        ro_binds = [(self.platform_dir, PLATFORM_DIR), (bp.path, own)]
        if bp.kind == Kind.CLASSIC:
            ro_binds.append((classic.ADAPTER_DIR, ADAPTER_MOUNT))
            env = {**env, "CLASSIC_BUILDPACK_DIR": own}
            own = ADAPTER_MOUNT
        uv = tools.platform_uv()
        if uv is not None:
            ro_binds.append((uv, tools.UV_MOUNT))
            env = {**env, "PAAS_UV": tools.UV_MOUNT}
        rw_binds = [(self.plan_dir, PLAN_DIR), (self.layers_host(bp), f"{LAYERS_DIR}/{bp.dirname}")]
        for other in group:
            self.make_layers_dirs(other)
        ro_binds += [
            (self.layers_host(other), f"{LAYERS_DIR}/{other.dirname}")
            for other in group
            if other != bp
        ]
        spec = BuildContainerSpec(
            id=f"build-{self.token}-{self.steps}",
            uid=self.uid,
            workspace=self.app_dir,
            ro_binds=ro_binds,
            rw_binds=rw_binds,
            command=[f"{own}/bin/{command[0]}", *command[1:]],
            env=env,
            memory_mb=self.settings.build_memory_mb,
            timeout=max(self.deadline - time.monotonic(), 1.0),
            network=self.network,
        )
        code = self.runtime.run_build(spec, self._watching_for_no_space(on_line))
        # Read from the container's cgroup: a shell that survives an OOM-killed pip or npm in
        # a pipeline exits 1, not 137.
        self.oom_kills = self.runtime.build_oom_kills.pop(spec.id, 0)
        if code == 0 and self.oom_kills:
            self.log(f"       Warning: the kernel killed a process of buildpack {bp.id} at the "
                     f"build memory limit ({self.memory_limit}); the buildpack went on")
        return code

    def _watching_for_no_space(self, on_line: Callable[[str], None]) -> Callable[[str], None]:
        def watch(line: str) -> None:
            if "No space left on device" in line or "ENOSPC" in line:
                self.said_no_space = True
            on_line(line)

        return watch

    def disk_full(self) -> bool:
        return self._workspace_full() or self._cache_full()

    def _workspace_full(self) -> bool:
        return bool(self.settings.build_disk_mb) and disk.is_full(self.root)

    def _cache_full(self) -> bool:
        return bool(self.settings.build_cache_mb) and disk.is_full(self.cache_dir)

    def disk_message(self) -> str:
        return disk.full_message(self.settings, self._workspace_full(), self._cache_full())

    @property
    def memory_limit(self) -> str:
        return f"builds may use {self.settings.build_memory_mb} MB (PAAS_BUILD_MEMORY_MB)"

    def fail_on_exit(self, bp: Buildpack, phase: str, code: int) -> None:
        # The runtime's own timeout ends after the deadline; a buildpack may exit 124 itself.
        if code == TIMEOUT_EXIT and time.monotonic() >= self.deadline:
            limit = f"{self.settings.build_timeout:g}"
            raise BuildFailed(f"build timed out after {limit} s (PAAS_BUILD_TIMEOUT)")
        if self.oom_kills:
            raise BuildFailed(
                f"buildpack {bp.id} ran out of memory during {phase}: the kernel killed "
                f"{_processes(self.oom_kills)} at the build memory limit, and bin/{phase} "
                f"exited with status {code}: {self.memory_limit}. Use less memory at build "
                "time (fewer parallel jobs), or ask the operator to raise the limit."
            )
        if self.said_no_space or self.disk_full():
            raise BuildFailed(f"buildpack {bp.id} failed during {phase}: {self.disk_message()}")
        if code == KILLED_EXIT:
            raise BuildFailed(
                f"buildpack {bp.id} was killed during {phase} (exit 137), most likely out of "
                f"memory: {self.memory_limit}"
            )
        raise BuildFailed(f"buildpack {bp.id} failed: bin/{phase} exited with status {code}")


def _processes(count: int) -> str:
    return "a process" if count == 1 else f"{count} processes"


def build_app(
    *,
    source: Path,
    cache_dir: Path,
    uid: int,
    config_vars: dict[str, str],
    settings: Settings,
    runtime: Runtime,
    store: LayerStore,
    log: Callable[[str], None],
    previous_digests: set[str] | None = None,
    labels: dict[str, str] | None = None,
) -> BuildResult:
    settings.builds_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    build = _Build(
        settings=settings,
        runtime=runtime,
        log=log,
        uid=uid,
        cache_dir=cache_dir,
        root=settings.builds_dir / f"build-{secrets.token_hex(8)}",
        deadline=time.monotonic() + settings.build_timeout,
        config_vars=config_vars,
    )
    try:
        with disk.cache(settings, cache_dir, log), disk.workspace(settings, build.root):
            try:
                with runtime.build_network(log) as build.network:
                    return _build_in(build, source, config_vars, store, previous_digests, labels)
            except OSError:  # root's own writes into a full build disk, as the build's fail
                if not build.disk_full():
                    raise
                raise BuildFailed(build.disk_message()) from None
            finally:
                _prune_cache(build, build.group)
    except BuildpackError as err:
        raise BuildFailed(str(err)) from None
    except disk.DiskError as err:
        raise BuildFailed(f"the platform could not prepare the build's disk: {err}. Tell the "
                          "operator; the app keeps its current release.") from None


def _build_in(build: _Build, source: Path, config_vars: dict[str, str], store: LayerStore,
              previous_digests: set[str] | None, labels: dict[str, str] | None) -> BuildResult:
    log = build.log
    _prepare(build, source, config_vars)
    group = _detect(build)
    log(f"-----> Building with buildpacks: {', '.join(bp.label for bp in group)}")
    _build_group(build, group)
    stored = _store_layers(build, group, store, previous_digests or set())
    layers = [layer for layer, _ in stored]
    _log_layers(log, layers)
    result = BuildResult(
        layers=layers,
        process_types=_process_types(build, group),
        env=_launch_env(build, group),
        buildpacks=[bp.id for bp in group],
    )
    return _with_manifest(result, [s for _, s in stored], store, labels or {})


# ---- workspace ---------------------------------------------------------------------------


def _prepare(build: _Build, source: Path, config_vars: dict[str, str]) -> None:
    shutil.copytree(source, build.app_dir, symlinks=True, ignore=_ignore_top_level(source))
    build.app_dir.chmod(0o755)
    (build.app_dir / ".layers").mkdir(mode=0o755)
    build.plan_dir.mkdir(mode=0o700)
    _write_platform(build.platform_dir, config_vars, build.uid)
    for path in (build.app_dir, build.app_dir / ".layers", build.plan_dir):
        os.chown(path, build.uid, build.uid)


def _ignore_top_level(source: Path) -> Callable[[str, list[str]], set[str]]:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {".git", ".layers"} & set(names) if Path(directory) == source else set()

    return ignore


def _write_platform(platform_dir: Path, config_vars: dict[str, str], uid: int) -> None:
    """Config vars as /platform/env/<KEY> files that only the build's uid can read."""
    env_dir = platform_dir / "env"
    env_dir.mkdir(parents=True, mode=0o700)
    platform_dir.chmod(0o700)
    for key, value in config_vars.items():
        if _ENV_NAME.match(key):
            fd = os.open(env_dir / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(value)
    for path in (platform_dir, env_dir, *env_dir.iterdir()):
        os.chown(path, uid, uid)


# ---- detect ------------------------------------------------------------------------------


def _detect(build: _Build) -> list[Buildpack]:
    chosen = classic.chosen(build.app_dir, build.config_vars, build.root / "buildpacks", build.log,
                            build.network)
    if chosen is None:
        chosen = project_buildpacks(build.app_dir)
    if chosen is not None:
        chosen = _outside_workspace(build, chosen)
        _detect_project(build, chosen)
        build.group = chosen
        return chosen
    results: dict[str, bool] = {}
    for group in default_order():
        passed = [bp for bp in group if _detect_one(build, bp, group, results)]
        if all(bp in passed for bp in group if not bp.optional):
            build.group = passed
            return passed
    looks_for = "; ".join(f"{bp_id}: {what}" for bp_id, what in WHAT_THEY_DETECT.items())
    raise BuildFailed(
        "No buildpack detected this app. The built-in buildpacks look for "
        f"{looks_for}. Add one of these files, or name your own buildpacks in project.toml "
        '([[build.buildpacks]] uri = "./path/to/buildpack").'
    )


def _outside_workspace(build: _Build, group: list[Buildpack]) -> list[Buildpack]:
    """An app's own buildpacks, copied out of the workspace before any build step runs.

    Each step binds its buildpack's directory read-only; bound from the workspace, it would be
    whatever an earlier step left at that path, a symlink to any host directory included.
    """
    app_dir = build.app_dir.resolve()
    copies = build.root / "own-buildpacks"
    result = []
    for i, bp in enumerate(group):
        if bp.path.is_relative_to(app_dir):
            copies.mkdir(mode=0o755, exist_ok=True)
            shutil.copytree(bp.path, copies / str(i), symlinks=True)
            bp = replace(bp, path=copies / str(i))
        result.append(bp)
    return result


def _detect_project(build: _Build, group: list[Buildpack]) -> None:
    results: dict[str, bool] = {}
    for bp in group:
        if not _detect_one(build, bp, group, results):
            raise BuildFailed(
                f"buildpack {bp.id} (named by the app) did not detect this app: its bin/detect "
                "said no. Fix the app, or remove the buildpack from project.toml, .buildpacks "
                "or BUILDPACK_URL."
            )


def _detect_one(
    build: _Build, bp: Buildpack, group: list[Buildpack], results: dict[str, bool]
) -> bool:
    if bp.id in results:
        return results[bp.id]
    build.make_layers_dirs(bp)
    on_host = detect_on_host(bp, build.app_dir)
    if on_host is not None:
        results[bp.id] = on_host
        return on_host
    output: list[str] = []
    plan = f"{PLAN_DIR}/{bp.dirname}.detect.toml"
    env = _cnb_env(build, bp, {"PATH": layerenv.STACK_PATH}, plan)
    code = build.run(bp, group, ["detect", PLATFORM_DIR, plan], env, output.append)
    if code not in (DETECT_PASS, DETECT_FAIL):
        for line in output:
            build.log(line)
        build.fail_on_exit(bp, "detect", code)
    results[bp.id] = code == DETECT_PASS
    return results[bp.id]


def _cnb_env(build: _Build, bp: Buildpack, base: dict[str, str], plan: str) -> dict[str, str]:
    stack = stack_id()
    return {
        **base,
        "HOME": "/tmp",
        "CNB_STACK_ID": stack,
        "PAAS_STACK_ID": stack,
        "CNB_TARGET_OS": "linux",
        "CNB_BUILDPACK_DIR": f"{BUILDPACKS_DIR}/{bp.dirname}",
        "CNB_LAYERS_DIR": f"{LAYERS_DIR}/{bp.dirname}",
        "CNB_PLATFORM_DIR": PLATFORM_DIR,
        "CNB_BP_PLAN_PATH": plan,
    }


# ---- build -------------------------------------------------------------------------------


def _build_group(build: _Build, group: list[Buildpack]) -> None:
    build_env = {"PATH": layerenv.STACK_PATH}
    for bp in group:
        layers = build.layers_host(bp)
        for stale in ("launch.toml", "build.toml"):
            (layers / stale).unlink(missing_ok=True)
        if bp.kind == Kind.CLASSIC and build.before_classic is None:
            build.before_classic = classic.snapshot(build.app_dir, _NOT_IN_SLUG)
        plan_name = f"{bp.dirname}.build.toml"
        with unsafe_as_failure(bp, PLAN_DIR):
            safefs.write_file(build.plan_dir, plan_name, b"")
        plan = f"{PLAN_DIR}/{plan_name}"
        env = _cnb_env(build, bp, build_env, plan)
        code = build.run(
            bp, group, ["build", f"{LAYERS_DIR}/{bp.dirname}", PLATFORM_DIR, plan], env, build.log
        )
        if code != 0:
            build.fail_on_exit(bp, "build", code)
        with unsafe_as_failure(bp, f"{LAYERS_DIR}/{bp.dirname}"):
            for layer in layerenv.read_layers(layers, f"{LAYERS_DIR}/{bp.dirname}"):
                if layer.build and safefs.is_dir(layers, layer.name):
                    layerenv.apply_layer(build_env, layer, "build")


def _launch_layers(
    build: _Build, group: list[Buildpack]
) -> list[tuple[Buildpack, layerenv.LayerInfo]]:
    found = []
    for bp in group:
        layers = build.layers_host(bp)
        with unsafe_as_failure(bp, f"{LAYERS_DIR}/{bp.dirname}"):
            for layer in layerenv.read_layers(layers, f"{LAYERS_DIR}/{bp.dirname}"):
                if layer.launch and safefs.is_dir(layers, layer.name):
                    found.append((bp, layer))
    return found


def _store_layers(
    build: _Build, group: list[Buildpack], store: LayerStore, previous: set[str]
) -> list[tuple[Layer, StoredLayer]]:
    def layer(name: str, stored: StoredLayer) -> tuple[Layer, StoredLayer]:
        reused = stored.digest in previous or not stored.created
        return Layer(name, stored.digest, reused, stored.size), stored

    layers = []
    for bp, info in _launch_layers(build, group):
        name = f"{bp.dirname}/{info.name}"
        # The memo is keyed by the cache dir that holds the layer between builds.
        memo = f"{build.cache_dir}/{name}"
        layers.append(layer(name, store.put_dir(info.host_dir, f".layers/{name}", memo=memo)))
    keep_app = None
    if build.before_classic is not None:
        before = build.before_classic
        output = store.put_dir(build.app_dir, "", _NOT_IN_SLUG,
                               keep=classic.added_by_buildpacks(before))
        layers.append(layer(classic.LAYER_NAME, output))
        keep_app = classic.from_the_app(before)
    layers.append(layer("app", store.put_dir(build.app_dir, "", _NOT_IN_SLUG, keep=keep_app)))
    return layers


def _with_manifest(result: BuildResult, stored: list[StoredLayer], store: LayerStore,
                   labels: dict[str, str]) -> BuildResult:
    config = {
        "Env": [f"{key}={value}" for key, value in sorted(result.env.items())],
        "WorkingDir": APP_DIR,
        "ExposedPorts": {},
    }
    all_labels = {
        **labels,
        "io.paas.buildpacks": ",".join(result.buildpacks),
        "io.paas.stack": stack_id(),
        "io.paas.process-types": json.dumps(result.process_types, sort_keys=True),
    }
    ref = f"{labels.get('io.paas.app', 'app')}:{labels.get('io.paas.build', secrets.token_hex(4))}"
    manifest = store.write_image(stored, config, all_labels, ref)
    return replace(result, manifest=manifest)


def _log_layers(log: Callable[[str], None], layers: list[Layer]) -> None:
    log("-----> Layers")
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        state = "reused" if layer.reused else "new"
        log(f"       {layer.name:<{width}}  {layer.digest[7:19]}  {_human(layer.size):>9}  {state}")


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _prune_cache(build: _Build, group: list[Buildpack] | None) -> None:
    """Keep only cache=true layers (and store.toml) in the build cache, as CNB restores them."""
    for bp in group or []:
        layers = build.layers_host(bp)
        if not layers.is_dir():
            continue
        keep = set(_KEEP_IN_CACHE)
        for info in layerenv.read_layers(layers, "", strict=False):
            if info.cache:
                keep.update({info.name, f"{info.name}.toml"})
        for path in layers.iterdir():
            if path.name in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# ---- release metadata ----------------------------------------------------------------------


def _process_types(build: _Build, group: list[Buildpack]) -> dict[str, str]:
    processes: dict[str, str] = {}
    for bp in group:
        with unsafe_as_failure(bp, f"{LAYERS_DIR}/{bp.dirname}"):
            processes.update(_launch_processes(build.layers_host(bp), bp))
            processes.update(_classic_processes(build.layers_host(bp)))
    procfile = build.app_dir / "Procfile"
    if procfile.is_file() or procfile.is_symlink():
        try:
            processes.update(parse_procfile(read_inside(build.app_dir, "Procfile")))
        except Invalid as err:
            raise BuildFailed(err.message) from None
    if not processes:
        raise BuildFailed(
            "No process types: add a Procfile to the root of the app, with a line like "
            "`web: python app.py` (listening on $PORT)."
        )
    profile_d = build.app_dir / ".profile.d"
    if profile_d.is_dir() and not profile_d.is_symlink():
        processes = {kind: PROFILE_PREFIX + command for kind, command in processes.items()}
    return processes


def _classic_processes(layers: Path) -> dict[str, str]:
    data = safefs.read_file(layers, "release.yml")
    return {} if data is None else classic.default_process_types(data.decode(errors="replace"))


def _launch_processes(layers: Path, bp: Buildpack) -> dict[str, str]:
    raw = safefs.read_file(layers, "launch.toml")
    if raw is None:
        return {}
    try:
        data = tomllib.loads(raw.decode(errors="replace"))
    except tomllib.TOMLDecodeError as err:
        raise BuildFailed(f"{bp.dirname}: launch.toml is not valid TOML: {err}") from None
    processes = {}
    for entry in data.get("processes", []):
        kind, command = entry.get("type"), entry.get("command")
        if isinstance(command, list):
            command = shlex.join([*command, *entry.get("args", [])])
        if isinstance(kind, str) and isinstance(command, str) and command:
            processes[kind] = command
    return processes


def _launch_env(build: _Build, group: list[Buildpack]) -> dict[str, str]:
    env = {"PATH": layerenv.STACK_PATH}
    for bp, layer in _launch_layers(build, group):
        with unsafe_as_failure(bp, f"{LAYERS_DIR}/{bp.dirname}"):
            layerenv.apply_layer(env, layer, "launch")
    return env
