"""Dyno sizes: the memory, CPU share, process count and disk of each. Plain data, imported by
the API's domain code and by the build worker (which must not load the ORM)."""

from __future__ import annotations

from dataclasses import dataclass

from paas.errors import Invalid


@dataclass(frozen=True)
class Size:
    name: str
    memory_mb: int
    cpu_shares: int
    pids: int
    # What /app's writable layer (and /tmp) may hold: tmpfs, so files count as memory.
    disk_mb: int


SIZES = {
    size.name: size
    for size in (
        Size("eco", 256, 256, 128, 128),
        Size("basic", 512, 512, 256, 256),
        Size("standard", 1024, 1024, 512, 512),
        Size("performance", 2048, 2048, 1024, 1024),
    )
}


def size_of(name: str) -> Size:
    try:
        return SIZES[name.lower()]
    except KeyError:
        raise Invalid(f"no dyno size {name!r}; the sizes are: "
                      + ", ".join(f"{s.name} ({s.memory_mb} MB)" for s in SIZES.values())) from None


def size_or_basic(name: str) -> Size:
    """A stored size's limits; an unknown name (a size since removed) runs as basic."""
    return SIZES.get(name, SIZES["basic"])
