"""Dyno output and the platform's lines about dynos, into the Redis streams: the app's log
(`app[web.1]`, `paas[web.1]`), an attached one-off's run stream, a release phase's build
stream.

A dyno's log is shipped by whoever owns the dyno at the time: the reconcile thread, or the
dyno's stop once it has begun (`stops.py`), never both, so its offset needs no lock."""

from __future__ import annotations

from paas import outputlines, streams
from paas.logs import RedisEvents
from paas.runtime import DynoStatus
from paas.runtime.agent.keys import DynoKey
from paas.runtime.dynolog import DynoLog, dropped_count

MAX_SHIP_BYTES = 256 * 1024  # of one dyno's output a pass
DRAIN_ROUNDS = 16  # of MAX_SHIP_BYTES, for the rest of a stopped dyno's output


class LogShipper:
    def __init__(self, events: RedisEvents, log_max_bytes: int) -> None:
        self.events = events
        self.log_max_bytes = log_max_bytes

    def ship(self, dyno: DynoStatus, final: bool = False) -> int:
        """The dyno's complete new lines (`final`: the last one too, complete or not), at most
        MAX_SHIP_BYTES of them; how many bytes were shipped."""
        log = DynoLog(dyno.log_path)
        try:
            offset, complete = log.read(final, MAX_SHIP_BYTES)
        except FileNotFoundError:
            return 0
        if not complete:
            return 0
        for line in complete.decode(errors="replace").splitlines():
            self._ship_line(dyno.metadata, line)
        log.set_offset(offset + len(complete))
        if not final:
            log.bound(self.log_max_bytes)
        return len(complete)

    def drain(self, dyno: DynoStatus) -> None:
        """All the rest of a dyno that has exited (what it printed during its grace too)."""
        for _ in range(DRAIN_ROUNDS):
            if not self.ship(dyno):  # whole lines: a line is not cut where a read ends
                break
        self.ship(dyno, final=True)  # and its last line, ended or not

    def platform(self, key: DynoKey, line: str) -> None:
        self.events.app_log(key.app, f"paas[{key.name}]", line)

    def release_phase(self, build_id: str, line: str) -> None:
        self.events.deploy_line(build_id, line)

    def end_oneoff(self, dyno: DynoStatus, code: int | None) -> None:
        """An attached one-off's run stream ends with its exit code; a release phase that
        succeeded says so in its build's stream."""
        meta = dyno.metadata
        key = DynoKey.of(meta)
        if meta.get("attach"):
            streams.end_run(self.events.client, key.app, key.name, code)
        if meta.get("build_id") and code == 0:
            self.release_phase(meta["build_id"], "-----> Release command succeeded")

    def _ship_line(self, meta: dict[str, str], line: str) -> None:
        key = DynoKey.of(meta)
        dropped = dropped_count(line)
        if dropped is not None:  # the dyno's monitor dropped output (paas/runtime/dynolog.py)
            line = f"Error L10 (Log truncated): {dropped} bytes of output dropped"
            self.platform(key, line)  # Heroku's L10: in the app's log and where output goes
        else:
            line = outputlines.cut(line)
        if meta.get("attach"):
            streams.write_run_line(self.events.client, key.app, key.name, line)
            return
        if meta.get("build_id"):
            self.release_phase(meta["build_id"], f"       {line}")
        if dropped is None:
            self.events.app_log(key.app, f"app[{key.name}]", line)
