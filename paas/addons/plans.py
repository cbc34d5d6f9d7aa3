"""Add-on services and their plans: what each server may use. Plain data (no ORM): the API
checks input against it, the agent sizes containers from what the API sends."""

from __future__ import annotations

from dataclasses import dataclass

from paas.errors import Invalid


@dataclass(frozen=True)
class Plan:
    name: str
    memory_mb: int  # the server container's memory limit
    disk_mb: int  # its data filesystem (a loop-mounted ext4 image)
    connections: int  # Postgres: the app role's connection limit; Redis: maxclients
    # Redis only: its `maxmemory` (MB) and `maxmemory-policy`.
    maxmemory_mb: int = 0
    policy: str = ""

    @property
    def pids(self) -> int:
        """Postgres forks a backend per connection, plus its own workers."""
        return self.connections + 64


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    scheme: str  # of the URL the app gets
    default_as: str  # the config var prefix: DATABASE -> DATABASE_URL
    default_plan: str
    plans: dict[str, Plan]
    version: str


def _plans(*plans: Plan) -> dict[str, Plan]:
    return {plan.name: plan for plan in plans}


SERVICES = {
    "postgres": Service(
        "postgres", 5432, "postgres", "DATABASE", "mini", _plans(
            Plan("mini", memory_mb=256, disk_mb=1024, connections=20),
            Plan("basic", memory_mb=512, disk_mb=4096, connections=50),
            Plan("standard", memory_mb=1024, disk_mb=16384, connections=120),
        ), version="15"),
    "redis": Service(
        "redis", 6379, "redis", "REDIS", "mini", _plans(
            Plan("mini", memory_mb=128, disk_mb=512, connections=20, maxmemory_mb=64,
                 policy="allkeys-lru"),
            Plan("basic", memory_mb=256, disk_mb=1024, connections=100, maxmemory_mb=160,
                 policy="noeviction"),
            Plan("standard", memory_mb=512, disk_mb=2048, connections=500, maxmemory_mb=384,
                 policy="noeviction"),
        ), version="7"),
}
ALIASES = {"heroku-postgresql": "postgres", "postgresql": "postgres", "pg": "postgres",
           "heroku-redis": "redis"}


def service_of(name: str) -> Service:
    service = SERVICES.get(ALIASES.get(name, name))
    if service is None:
        raise Invalid(f"no add-on service {name!r}; the services are: {', '.join(SERVICES)} "
                      "(`paas addons:plans` lists their plans)")
    return service


def parse(spec: str) -> tuple[Service, Plan]:
    """`postgres`, `postgres:standard` (Heroku's SERVICE:PLAN)."""
    name, _, plan_name = spec.partition(":")
    service = service_of(name.strip().lower())
    return service, plan_of(service, plan_name.strip().lower() or service.default_plan)


def plan_of(service: Service, name: str) -> Plan:
    plan = service.plans.get(name.removeprefix(f"{service.name}:"))
    if plan is None:
        raise Invalid(f"{service.name} has no plan {name!r}; its plans are: "
                      + ", ".join(service.plans) + " (`paas addons:plans`)")
    return plan


def table() -> list[dict[str, object]]:
    """Every plan, for `paas addons:plans` and the API."""
    return [{"service": s.name, "plan": p.name, "spec": f"{s.name}:{p.name}",
             "memory_mb": p.memory_mb, "disk_mb": p.disk_mb, "connections": p.connections,
             "maxmemory_mb": p.maxmemory_mb, "policy": p.policy, "default": p.name ==
             s.default_plan} for s in SERVICES.values() for p in s.plans.values()]
