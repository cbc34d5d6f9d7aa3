"""Nodes: the hosts that run dynos, each with a scheduler backend (an agent). A node registers
(`register`) with its memory capacity, and each request of its desired state is a heartbeat;
one not heard from for `PAAS_NODE_GRACE` seconds is lost (`paas/scheduling.py` moves its dynos
to live nodes)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paas.errors import Invalid, NotFound
from paas.models import Assignment, Dyno, Node
from paas.wire import NodeInfo

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
READY = "ready"
LOST = "lost"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise Invalid(f"{name[:80]!r} is not a node name: letters, digits, '.', '_' and '-', "
                      "at most 63, starting with a letter or digit")
    return name


def register(db: Session, name: str, info: NodeInfo, moment: float) -> Node:
    """A node's registration, or its heartbeat with its capacity again."""
    if info.memory_mb <= 0:
        raise Invalid("memory_mb must be the node's memory for dynos, in MB (more than 0)")
    node = db.get(Node, check_name(name))
    if node is None:
        node = Node(name=name, registered_at=moment)
        db.add(node)
    node.memory_mb, node.backend, node.dyno_subnet = info.memory_mb, info.backend, info.dyno_subnet
    node.heartbeat_at = moment
    db.flush()
    return node


def get(db: Session, name: str) -> Node:
    node = db.get(Node, name)
    if node is None:
        raise NotFound(f"node {name[:80]!r} is not registered: register it first with "
                       f"PUT /v1/internal/nodes/{name[:80]}")
    return node


def heartbeat(db: Session, name: str, moment: float) -> Node:
    node = get(db, name)
    node.heartbeat_at = moment
    return node


def api_started(db: Session, moment: float) -> None:
    """Every node gets its grace afresh when the API starts: while the API was away no node
    could be heard, and the first to ask again must not take the others' dynos."""
    for node in everyone(db):
        node.heartbeat_at = max(node.heartbeat_at, moment)
    db.flush()


def is_live(node: Node, moment: float, grace: float) -> bool:
    return moment - node.heartbeat_at <= grace


def everyone(db: Session) -> list[Node]:
    return list(db.scalars(select(Node).order_by(Node.name)))


def live(db: Session, moment: float, grace: float) -> list[Node]:
    return [node for node in everyone(db) if is_live(node, moment, grace)]


def lost_names(db: Session, moment: float, grace: float) -> set[str]:
    return {node.name for node in everyone(db) if not is_live(node, moment, grace)}


def listing(db: Session, moment: float, grace: float) -> list[dict[str, Any]]:
    """`paas nodes`: every node with its state, memory assigned and dynos reported."""
    used = {node: total for node, total in db.execute(
        select(Assignment.node, func.sum(Assignment.memory_mb)).group_by(Assignment.node))}
    counts = {node: count for node, count in db.execute(
        select(Dyno.node, func.count(Dyno.id)).group_by(Dyno.node))}
    return [to_dict(node, moment, grace, used.get(node.name) or 0, counts.get(node.name) or 0)
            for node in everyone(db)]


def to_dict(node: Node, moment: float, grace: float, memory_used_mb: int,
            dynos: int) -> dict[str, Any]:
    return {
        "name": node.name,
        "state": READY if is_live(node, moment, grace) else LOST,
        "backend": node.backend,
        "dyno_subnet": node.dyno_subnet,
        "memory_used_mb": memory_used_mb,
        "memory_mb": node.memory_mb,
        "dynos": dynos,
        "registered_at": node.registered_at,
        "heartbeat_at": node.heartbeat_at,
        "heartbeat_age": round(max(0.0, moment - node.heartbeat_at), 1),
    }
