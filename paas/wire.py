"""The contracts between the platform's processes: what the API, the build worker, the agents
(the schedulers) and the router send each other as JSON. Frozen dataclasses, each field
documented; `from_json` validates what arrives (a `WireError` names the bad field) and
`to_json` gives what to send. This module imports nothing of the platform: the worker, the
agent and the router use it without the ORM."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Self, Union, get_args, get_origin, get_type_hints


class WireError(ValueError):
    """A message that does not match its contract."""


class DynoState(enum.StrEnum):
    """One dyno (one container, one id) as its node reports it: starting → up → down |
    crashed. A restart after a crash is a new dyno (a new id) that starts over."""

    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    DOWN = "down"


# What one dyno may become from one agent report to the next (`paas/runtime/agent.py`
# `reported_state`). A report the API missed skips states, so each set also holds where the
# skipped ones lead. A dyno is first seen in any state: usually starting, a one-off up.
# down: the platform is taking it out (old release, scale-down, replaced by ps:restart or
# ps:resize, ps:stop), or a one-off exited 0; wanted again before it was stopped, it is back
# to what it was. crashed: it exited on its own or failed to boot (R10, health checks); its
# container never runs again, the formation starts a new dyno instead.
DYNO_TRANSITIONS: dict[DynoState, set[DynoState]] = {
    DynoState.STARTING: {DynoState.UP, DynoState.CRASHED, DynoState.DOWN},
    DynoState.UP: {DynoState.CRASHED, DynoState.DOWN},
    DynoState.DOWN: {DynoState.STARTING, DynoState.UP, DynoState.CRASHED},
    DynoState.CRASHED: set(),
}


class Wire:
    """Mixin of the wire types: JSON in (validated) and out."""

    @classmethod
    def from_json(cls, raw: Any) -> Self:
        return typing.cast(Self, _decode(cls, raw, cls.__name__))

    def to_json(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], _encode(self))


# ---- the scheduler contract: desired dynos in, reports out -------------------------------


@dataclass(frozen=True)
class HealthCheck(Wire):
    """One of app.json's `healthchecks.<type>` entries, tried in order before a web dyno is up."""

    path: str  # the URL path asked for over HTTP on the dyno's port
    attempts: int = 3  # failures in a row before the dyno crashed
    initialDelay: float = 0  # seconds after the start before the first try
    wait: float = 5  # seconds between tries
    timeout: float = 5  # seconds one try may take
    content: str = ""  # text the response must contain; empty: any 2xx/3xx
    type: str = "startup"  # Dokku's check type; only startup checks exist


@dataclass(frozen=True)
class DesiredDyno(Wire):
    """One dyno the API wants to run on a node: a formation dyno (web.1) or a one-off
    (run.3, release.1, postdeploy.1)."""

    app: str
    slot: int  # the app's index on the host: its dyno network is the slot-th /24
    uid: int  # the app's own unprivileged uid that its processes run as
    release: int  # the release version whose slug and config this dyno runs
    type: str  # the process type (web, worker, run, release, postdeploy)
    index: int  # web.<index>; a one-off's number
    command: tuple[str, ...]  # argv, e.g. ("/bin/sh", "-c", "gunicorn app:app")
    env: dict[str, str]  # the whole environment: slug env, config vars, PORT, DYNO...
    layers: tuple[str, ...]  # the slug's layer digests, bottom layer first
    memory_mb: int
    cpu_shares: int
    pids: int
    disk_mb: int  # the dyno's writable disk; 0: no limit of its own
    port: int  # the port $PORT says; a web dyno must listen on it
    size: str  # the dyno size's name (basic, standard-1x...)
    # A running dyno whose generation differs (a resize, a ps:restart) is replaced.
    generation: str
    node: str  # the node the API assigned it to: only that node's agent runs it
    healthchecks: tuple[HealthCheck, ...] = ()
    oneoff: bool = False  # never restarted; its exit code is reported
    attach: bool = False  # a one-off whose output goes to its run stream, not the app log
    tty: bool = False  # ... with a terminal relayed through Redis
    build_id: str | None = None  # a release phase: its output also goes to this build's stream

    @property
    def name(self) -> str:
        return f"{self.type}.{self.index}"


class AddonServerState(enum.StrEnum):
    """An add-on's server as its node reports it: starting → up → crashed (restarted by the
    node: starting again); removed once a destroyed add-on's server and data are gone."""

    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    REMOVED = "removed"


@dataclass(frozen=True)
class AddonLink(Wire):
    """An app an add-on is attached to: its server has an address on that app's network, and
    only that app's dynos (and the host) reach it there."""

    app: str
    slot: int  # the app's slot: its bridge and /24
    ip: str  # the server's address on that network


@dataclass(frozen=True)
class DesiredAddon(Wire):
    """An add-on's server (Postgres, Redis) that a node runs: its own container, uid and
    data filesystem, stopped before any replacement starts (never two on one data)."""

    name: str
    service: str  # postgres | redis
    uid: int  # the server's own unprivileged uid
    generation: str  # a running server of another generation is replaced (stop first)
    memory_mb: int
    pids: int
    disk_mb: int  # its data filesystem's size (grown, never shrunk, when the plan changes)
    port: int
    env: dict[str, str]  # the entry script's settings and credentials (paas/addons/server)
    links: tuple[AddonLink, ...]
    node: str
    destroyed: bool = False  # stop it and delete its data


@dataclass(frozen=True)
class AddonReport(Wire):
    """One add-on's server as its node sees it now."""

    name: str
    generation: str
    state: AddonServerState
    started_at: float = 0.0
    memory_mb: float = 0.0
    error: str = ""  # why it is not up (its output's tail, a refused start)


@dataclass(frozen=True)
class AppPolicy(Wire):
    """How a node treats every dyno of one app."""

    stop_grace: float | None = None  # seconds between SIGTERM and SIGKILL; None: the default


@dataclass(frozen=True)
class DesiredState(Wire):
    """What one node should run (`GET /v1/internal/nodes/{node}/desired`)."""

    dynos: tuple[DesiredDyno, ...]
    apps: dict[str, AppPolicy]
    addons: tuple[DesiredAddon, ...] = ()  # the add-on servers this node holds the data of


@dataclass(frozen=True)
class DynoReport(Wire):
    """One dyno as its node sees it now."""

    id: str  # the container's id, unique on the platform
    app: str
    release: int
    type: str
    index: int
    state: DynoState
    ip: str = ""  # where the router reaches it
    port: int = 0
    started_at: float = 0.0  # unix time
    exit_code: int | None = None  # set once it exited
    restarts: int = 0  # crashes since its release or its last restart
    memory_mb: float = 0.0
    cpu_percent: float | None = None
    reason: str = ""  # why it crashed, when the node knows (R10, a failed health check)
    oneoff: bool = False
    output_tail: str = ""  # the last lines of a crashed dyno's or a one-off's output


@dataclass(frozen=True)
class FailedOneOff(Wire):
    """A one-off its node could not start: it exits 127 with `error` as its output."""

    app: str
    type: str
    index: int
    error: str


@dataclass(frozen=True)
class FailedStart(Wire):
    """A formation dyno its node could not start (a platform error, not the app's)."""

    app: str
    release: int
    type: str
    index: int
    error: str
    permanent: bool = False  # trying again cannot help: its release fails at once


@dataclass(frozen=True)
class NodeReport(Wire):
    """Everything a node runs, replacing what it reported before
    (`PUT /v1/internal/nodes/{node}/dynos`)."""

    dynos: tuple[DynoReport, ...]
    failed_oneoffs: tuple[FailedOneOff, ...] = ()
    failed_starts: tuple[FailedStart, ...] = ()
    addons: tuple[AddonReport, ...] = ()


@dataclass(frozen=True)
class NodeInfo(Wire):
    """A node registering itself, and each heartbeat after (`PUT /v1/internal/nodes/{node}`)."""

    memory_mb: int  # what its dynos may use in all: the API assigns no more than this
    backend: str = "runc"  # the scheduler backend running on it
    dyno_subnet: str = ""  # where its dynos' addresses come from (for operators)


# ---- slugs and builds: the API and the build worker ---------------------------------------


@dataclass(frozen=True)
class SlugLayer(Wire):
    """One layer of a slug, a tar in the layer store."""

    digest: str  # "sha256:..." of the tar: its name in the layer store
    name: str = ""  # the buildpack's layer name, or "app"
    reused: bool = False  # the build found it unchanged from the app's last build
    size: int = 0  # bytes


@dataclass(frozen=True)
class FormationDefault(Wire):
    """app.json's `formation.<type>`: what a new process type starts with."""

    quantity: int = 1
    size: str = "basic"


@dataclass(frozen=True)
class CronEntry(Wire):
    """One of app.json's `cron` jobs (`paas/appjson.py` checked its schedule and zone)."""

    command: str  # run by /bin/sh -c in a one-off dyno (cron.N) of the current release
    schedule: str  # five cron fields, or @hourly, @daily, @weekly, @monthly, @yearly
    tz: str = "UTC"  # the zone its schedule is read in (app.json "TZ" of the job or the app)


@dataclass(frozen=True)
class AppJson(Wire):
    """What the platform reads of app.json (`paas/appjson.py` parses and checks it)."""

    formation: dict[str, FormationDefault] = dataclasses.field(default_factory=dict)
    scripts: dict[str, str] = dataclasses.field(default_factory=dict)  # predeploy, postdeploy
    healthchecks: dict[str, tuple[HealthCheck, ...]] = dataclasses.field(default_factory=dict)
    cron: tuple[CronEntry, ...] = ()


@dataclass(frozen=True)
class Slug(Wire):
    """A build's output: its layers and how to run it. Stored with the build and each
    release that runs it."""

    layers: tuple[SlugLayer, ...] = ()  # bottom layer first
    process_types: dict[str, str] = dataclasses.field(default_factory=dict)  # type → command
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # the buildpacks' launch env
    buildpacks: tuple[str, ...] = ()  # the ids of the buildpacks that built it
    manifest: str | None = None  # the digest of its OCI-style manifest blob, if any
    app_json: AppJson = dataclasses.field(default_factory=AppJson)

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> Slug:
        """A slug as a database row holds it (None: no slug; a null field: its default)."""
        return cls.from_json({k: v for k, v in (stored or {}).items() if v is not None})

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(layer.digest for layer in self.layers)


@dataclass(frozen=True)
class BuildInfo(Wire):
    """A build as the worker needs it (`GET /v1/internal/builds/{id}`)."""

    id: str
    app: str
    uid: int  # the app's uid: the build runs as it
    commit: str
    status: str  # pending, building, succeeded, failed
    config: dict[str, str]  # the app's config vars (buildpacks export them to their tools)
    previous_layers: tuple[str, ...] = ()  # digests of the app's last slug (layers to reuse)


@dataclass(frozen=True)
class BuildResult(Wire):
    """A build's outcome, from the worker (`POST /v1/internal/builds/{id}/result`)."""

    status: str  # "succeeded" (with its slug) or "failed" (with its error)
    slug: Slug | None = None
    error: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("succeeded", "failed") or (
                self.status == "succeeded" and self.slug is None):
            raise WireError('send {"status": "succeeded", "slug": {...}} or '
                            '{"status": "failed", "error": "..."}')


# ---- the route table: the API and the router ----------------------------------------------


@dataclass(frozen=True)
class Peer(Wire):
    """One dyno a hostname's requests go to."""

    addr: str  # "ip:port"
    dyno: str  # its name, web.1: in the router's log lines


@dataclass(frozen=True)
class Route(Wire):
    """What the router does with one hostname."""

    app: str
    mode: str = "up"  # up (to the peers), idle (H14), crashed (H10), maintenance (H80)
    peers: tuple[Peer, ...] = ()
    # Plain HTTP is answered 308 to HTTPS (the hostname has a certificate served); ACME
    # challenges never are.
    https_redirect: bool = False
    hsts_max_age: int = 0  # Strict-Transport-Security on HTTPS answers when above 0


@dataclass(frozen=True)
class Certificate(Wire):
    """A TLS certificate the router serves by SNI for its hostnames (its app's)."""

    name: str
    hostnames: tuple[str, ...]
    cert: str  # PEM
    key: str  # PEM


@dataclass(frozen=True)
class Challenge(Wire):
    """An ACME http-01 challenge the router answers itself, whatever its app's state:
    `GET http://<hostname>/.well-known/acme-challenge/<token>` → `key_authorization`."""

    hostname: str
    token: str  # base64url, from the CA
    key_authorization: str  # token "." the account key's thumbprint


@dataclass(frozen=True)
class RouteTable(Wire):
    """Every hostname's route and the certificates (`GET /v1/internal/routes`)."""

    routes: dict[str, Route]
    generation: int = 0  # how many route changes it includes (the router acknowledges it)
    certificates: tuple[Certificate, ...] = ()
    challenges: tuple[Challenge, ...] = ()  # in the table from its generation on


# ---- decoding ------------------------------------------------------------------------------

_NONE = type(None)


def _decode(hint: Any, raw: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return _decode_union(get_args(hint), raw, where)
    if origin is tuple:
        return tuple(_decode(get_args(hint)[0], item, f"{where}[{i}]")
                     for i, item in enumerate(_expect(raw, list, where)))
    if origin is dict:
        key_type, value_type = get_args(hint)
        return {_decode(key_type, k, f"{where} key"): _decode(value_type, v, f"{where}.{k}")
                for k, v in _expect(raw, dict, where).items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, raw, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(raw)
        except ValueError:
            raise WireError(f"{where}: {raw!r} is not one of "
                            f"{', '.join(str(m.value) for m in hint)}") from None
    return _decode_scalar(hint, raw, where)


def _decode_union(options: tuple[Any, ...], raw: Any, where: str) -> Any:
    if raw is None and _NONE in options:
        return None
    (inner,) = [o for o in options if o is not _NONE]
    return _decode(inner, raw, where)


def _decode_scalar(hint: Any, raw: Any, where: str) -> Any:
    if hint is Any:
        return raw
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if hint in (int, float) and isinstance(raw, bool):
        raise WireError(f"{where}: expected {hint.__name__}, got {raw!r}")
    return _expect(raw, hint, where)


def _expect(raw: Any, kind: type, where: str) -> Any:
    if not isinstance(raw, kind):
        raise WireError(f"{where}: expected {kind.__name__}, got {type(raw).__name__}")
    return raw


def _decode_dataclass(cls: type, raw: Any, where: str) -> Any:
    fields = _expect(raw, dict, where)
    hints = get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name in fields:
            values[spec.name] = _decode(hints[spec.name], fields[spec.name],
                                        f"{where}.{spec.name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise WireError(f"{where}: {spec.name} is missing")
    return cls(**values)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {spec.name: _encode(getattr(value, spec.name))
                for spec in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value

