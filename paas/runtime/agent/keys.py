"""Which dyno is which: the key of a desired dyno and of a running one."""

from __future__ import annotations

from typing import NamedTuple

from paas.wire import DesiredDyno


class DynoKey(NamedTuple):
    """A dyno of the formation or a one-off, across its restarts: one release's web.2."""

    app: str
    release: int
    type: str
    number: int  # web.<number>; `index` would shadow tuple.index

    @classmethod
    def of(cls, metadata: dict[str, str]) -> DynoKey:
        """The key a running dyno carries in its record's metadata (see `start.metadata`)."""
        return cls(metadata["app"], int(metadata["release"]), metadata["type"],
                   int(metadata["index"]))

    @classmethod
    def wanted(cls, dyno: DesiredDyno) -> DynoKey:
        return cls(dyno.app, dyno.release, dyno.type, dyno.index)

    @property
    def name(self) -> str:
        return f"{self.type}.{self.number}"
