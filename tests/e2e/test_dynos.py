"""Dyno lifecycle end to end, with the test platform's short time limits: formation
commands, zero-downtime restarts, crash backoff, boot timeout, graceful stop, one-off dynos,
logs, and an agent that is killed and comes back."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import select
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from paas.wire import DYNO_TRANSITIONS, DynoState
from tests.platform import PAAS, Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e


def api_get(platform: Platform, path: str) -> Any:
    with platform.api() as api:
        return api.get(path).json()

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (app|paas|router)\[[a-z.0-9]+\]: ")


@pytest.fixture
def quick(platform: Platform) -> Platform:
    """The session's platform (PAAS_STOP_GRACE=3, PAAS_BOOT_TIMEOUT=30, backoff from 1 s). A
    platform of its own would need a dyno subnet of its own."""
    return platform


def wait_for_api(platform: Platform) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{platform.api_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, platform.output()
        time.sleep(0.2)


def deploy(platform: Platform, tmp_path: Path, app: str, procfile: str | None = None) -> Path:
    platform.paas("apps:create", app)
    repo = app_repo(tmp_path, "dynos")
    if procfile is not None:
        (repo / "Procfile").write_text(procfile)
        commit_all(repo, "procfile")
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert result.returncode == 0, result.stderr
    return repo


def ps(platform: Platform, app: str) -> list[dict[str, Any]]:
    return json.loads(platform.paas("ps", "-a", app, "--json").stdout)


def logs(platform: Platform, app: str, *extra: str) -> str:
    return platform.paas("logs", "-a", app, "-n", "1500", *extra).stdout


def eventually(check: Callable[[], Any], timeout: float = 40, what: str = "",
               explain: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"never happened: {what or check}\n{explain() if explain else ''}")


def up_dynos(platform: Platform, app: str, process_type: str) -> dict[str, str]:
    return {d["name"]: d["id"] for d in ps(platform, app)
            if d["type"] == process_type and d["state"] == "up"}


class Visitor:
    """Keeps requesting an app through the router; counts what was not a 200."""

    def __init__(self, platform: Platform, app: str) -> None:
        self.platform, self.app = platform, app
        self.failures: list[str] = []
        self.answers = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.platform.get(self.app)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:80]}")
                self.answers += 1
            except httpx.HTTPError as error:
                self.failures.append(repr(error))

    def __enter__(self) -> Visitor:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


class StateWatch:
    """Keeps reading an app's dynos from the API; on leaving, checks that each dyno's states
    followed DYNO_TRANSITIONS, and that the API refused or flagged none of the agent's."""

    def __init__(self, platform: Platform, app: str) -> None:
        self.platform, self.app = platform, app
        self.lives: dict[str, list[str]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with self.platform.api() as api:
            while not self.stop.wait(0.2):
                try:
                    listing = api.get(f"/v1/apps/{self.app}/dynos").json()
                except httpx.HTTPError:
                    continue
                for dyno in listing:
                    states = self.lives.setdefault(f"{dyno['name']} {dyno['id']}", [])
                    if not states or states[-1] != dyno["state"]:
                        states.append(dyno["state"])

    def __enter__(self) -> StateWatch:
        self.thread.start()
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        if error is not None:
            return
        for dyno, states in self.lives.items():
            for before, after in itertools.pairwise(states):
                assert after in DYNO_TRANSITIONS[DynoState(before)], (dyno, states)
        assert "DYNO_TRANSITIONS does not allow" not in self.platform.log_path.read_text(
            errors="replace")


def test_scale_resize_restart_and_stop_drop_no_request(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "formation")
    quick.wait_for("formation", "hello from web.1 v1")

    refused = quick.paas("ps:scale", "clock=1", "-a", "formation", check=False)
    assert refused.returncode != 0
    assert "no process type 'clock'" in refused.stderr
    assert "crashy, stubborn, web, worker" in refused.stderr
    bad_size = quick.paas("ps:resize", "web=gigantic", "-a", "formation", check=False)
    assert bad_size.returncode != 0 and "basic (512 MB)" in bad_size.stderr

    def explain() -> str:
        return json.dumps(ps(quick, "formation"), indent=1) + logs(quick, "formation")

    with Visitor(quick, "formation") as visitor, StateWatch(quick, "formation") as watch:
        quick.paas("ps:scale", "web=2", "-a", "formation")
        first = eventually(lambda: len(up_dynos(quick, "formation", "web")) == 2
                           and up_dynos(quick, "formation", "web"), what="two web dynos",
                           explain=explain)
        quick.paas("ps:resize", "web=standard", "-a", "formation")
        resized = eventually(lambda: (d := up_dynos(quick, "formation", "web")) and len(d) == 2
                             and not set(d.values()) & set(first.values()) and d,
                             what="both web dynos replaced", explain=explain)
        quick.paas("ps:restart", "web.1", "-a", "formation")
        eventually(lambda: (d := up_dynos(quick, "formation", "web")).get("web.1") not in (
            None, resized["web.1"]) and d.get("web.2") == resized["web.2"],
            what="web.1 alone restarted", explain=explain)
        quick.paas("ps:stop", "web.2", "-a", "formation")
        eventually(lambda: up_dynos(quick, "formation", "web").get("web.2") not in (
            None, resized["web.2"]), what="web.2 replaced", explain=explain)
        eventually(lambda: len([d for d in ps(quick, "formation") if d["type"] == "web"]) == 2,
                   what="the old dynos gone", explain=explain)
    assert visitor.answers > 20
    assert visitor.failures == []
    # Replaced by restarts, resizes and ps:stop: down, never crashed.
    seen = {s for states in watch.lives.values() for s in states}
    assert {"up", "down"} <= seen and "crashed" not in seen, watch.lives

    listing = quick.paas("ps", "-a", "formation").stdout
    # A restart or a resize replaces dynos: it is not a crash, so no restarts are counted.
    assert re.search(r"web\.1\s+up\s+v1\s+\S+\s+\d+m\d\ds\s+0\s+\d+ MB", listing), (
        listing + logs(quick, "formation"))
    assert [d["restarts"] for d in ps(quick, "formation") if d["type"] == "web"] == [0, 0], (
        logs(quick, "formation"))
    assert all(d["memory_mb"] > 1 for d in ps(quick, "formation") if d["state"] == "up")
    formation = api_get(quick, "/v1/apps/formation/formation")
    assert {"type": "web", "quantity": 2, "size": "standard"} in formation
    events = logs(quick, "formation", "--source", "paas", "--ps", "web.2")
    assert "State changed from starting to up" in events
    assert "Stopping all processes with SIGTERM" in events
    assert "web.2 got SIGTERM, exiting" in logs(quick, "formation", "--ps", "web.2")
    # Zero downtime, as the platform's events tell it: the new web.1 was up before the old
    # one got SIGTERM.
    web1 = logs(quick, "formation", "--source", "paas", "--ps", "web.1")
    assert web1.rindex("State changed from starting to up") < web1.rindex(
        "Stopping all processes with SIGTERM"), web1


def test_crash_backoff_ephemeral_filesystem_and_restart_reset(quick: Platform,
                                                              tmp_path: Path) -> None:
    deploy(quick, tmp_path, "crashes")

    def restarts() -> int:
        return max([d["restarts"] for d in ps(quick, "crashes") if d["type"] == "crashy"],
                   default=0)

    with StateWatch(quick, "crashes") as watch:
        quick.paas("ps:scale", "crashy=1", "-a", "crashes")
        before = eventually(lambda: restarts() >= 4 and restarts(), what="four crashes")
    # Each restart is a new dyno; a crashed one never comes back (the table's check above).
    crashy = [states for dyno, states in watch.lives.items() if dyno.startswith("crashy.1 ")]
    assert sum(states[-1] == "crashed" for states in crashy) >= 2, crashy
    text = logs(quick, "crashes", "--ps", "crashy.1")
    assert "app[crashy.1]: stale filesystem" not in text
    assert text.count("app[crashy.1]: fresh filesystem") >= 3
    assert "paas[crashy.1]: Process exited with status 1" in text
    assert "State changed from starting to crashed" in text or "to crashed" in text

    quick.paas("ps:restart", "crashy", "-a", "crashes")
    eventually(lambda: 0 < restarts() < before, what="the backoff reset by ps:restart")


def test_boot_timeout_fails_the_deploy_and_the_old_release_keeps_serving(
        quick: Platform, tmp_path: Path) -> None:
    repo = deploy(quick, tmp_path, "slowboot")
    quick.wait_for("slowboot", "hello from web.1 v1")

    (repo / "Procfile").write_text("web: sleep 1000\n")
    commit_all(repo, "never binds")
    result = git(repo, "push", quick.remote_url("slowboot"), "main", check=False)

    assert result.returncode != 0
    assert "Error R10 (Boot timeout)" in result.stderr
    assert "hello from web.1 v1" in quick.get("slowboot").text
    assert "paas[web.1]: Error R10 (Boot timeout)" in logs(quick, "slowboot")


def test_graceful_stop_with_a_per_app_grace_and_r12(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "stopping")
    quick.paas("ps:set", "stop-timeout-seconds=1", "-a", "stopping")
    quick.paas("ps:scale", "worker=1", "stubborn=1", "-a", "stopping")
    eventually(lambda: {"worker.1", "stubborn.1"} <= {d["name"] for d in ps(quick, "stopping")
                                                      if d["state"] == "up"})
    eventually(lambda: "tick 3" in logs(quick, "stopping", "--ps", "worker.1"))

    quick.paas("ps:scale", "worker=0", "stubborn=0", "-a", "stopping")
    eventually(lambda: not [d for d in ps(quick, "stopping") if d["type"] != "web"])

    stubborn = logs(quick, "stopping", "--ps", "stubborn.1")
    assert "Stopping all processes with SIGTERM" in stubborn
    assert "Error R12 (Exit timeout) -> At least one process failed to exit within 1 " \
           "seconds of SIGTERM" in stubborn
    polite = logs(quick, "stopping", "--ps", "worker.1")
    assert "app[worker.1]: worker.1 got SIGTERM, exiting" in polite
    assert "R12" not in polite


def test_one_off_dynos_attached_and_detached(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "oneoffs")
    quick.paas("config:set", "COLOR=teal", "-a", "oneoffs")
    quick.wait_for("oneoffs", "hello from web.1 v2")

    attached = quick.paas("run", "-a", "oneoffs", "--", "sh", "-c",
                          'echo "color=$COLOR dyno=$DYNO"; ls server.py; exit 3', check=False)
    assert attached.returncode == 3, attached.stderr
    assert "color=teal dyno=run.1" in attached.stdout
    assert "server.py" in attached.stdout
    assert "app[run.1]" not in logs(quick, "oneoffs")  # attached output is the caller's

    missing = quick.paas("run", "-a", "oneoffs", "--", "no-such-command", check=False)
    assert missing.returncode == 127
    assert "not found" in missing.stdout + missing.stderr

    detached = quick.paas("run", "--detach", "-a", "oneoffs", "--", "echo detached $DYNO")
    assert "run.3" in detached.stdout
    text = eventually(lambda: "exited with status" in (
        t := logs(quick, "oneoffs", "--ps", "run.3")) and t, what="the detached run's end")
    assert LOG_LINE.match(text.splitlines()[-1]), text
    assert "app[run.3]: detached run.3" in text
    assert "paas[run.3]: Process exited with status 0" in text
    eventually(lambda: not [d for d in ps(quick, "oneoffs") if d["type"] == "run"])

    sleeper = quick.paas("run", "--detach", "-a", "oneoffs", "--", "sleep 600")
    assert "run.4" in sleeper.stdout
    eventually(lambda: any(d["name"] == "run.4" and d["state"] == "up"
                           for d in ps(quick, "oneoffs")))
    quick.paas("ps:stop", "run.4", "-a", "oneoffs")
    eventually(lambda: not [d for d in ps(quick, "oneoffs") if d["type"] == "run"])
    state = api_get(quick, "/v1/apps/oneoffs/dynos/run.4")
    assert state["state"] == "exited"


def test_logs_filters_and_tail(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "logging")
    quick.paas("ps:scale", "worker=1", "-a", "logging")
    eventually(lambda: "tick 2" in logs(quick, "logging", "--ps", "worker"))

    worker_only = logs(quick, "logging", "--ps", "worker.1", "--source", "app").splitlines()
    assert worker_only and all(" app[worker.1]: " in line for line in worker_only)
    assert all(LOG_LINE.match(line) for line in worker_only)
    platform_only = logs(quick, "logging", "--source", "paas").splitlines()
    assert platform_only and all(" paas[" in line for line in platform_only)
    assert len(logs(quick, "logging", "-n", "5").splitlines()) == 5

    with subprocess.Popen([PAAS, "logs", "-a", "logging", "--tail", "-n", "1", "--ps",
                           "worker.1"], env=quick.env, stdout=subprocess.PIPE, text=True) as tail:
        assert tail.stdout is not None
        seen = [tail.stdout.readline() for _ in range(4)]
        tail.terminate()
    counts = [int(m.group(1)) for line in seen if (m := re.search(r"tick (\d+)", line))]
    assert len(counts) == 4 and counts == sorted(counts) and counts[-1] > counts[0]


def test_a_restarted_agent_adopts_its_dynos(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "adopted")
    quick.paas("ps:scale", "worker=1", "crashy=1", "-a", "adopted")
    eventually(lambda: "tick 2" in logs(quick, "adopted", "--ps", "worker.1"))

    def crashes() -> int:
        return max([d["restarts"] for d in ps(quick, "adopted") if d["type"] == "crashy"],
                   default=-1)

    crashed = eventually(lambda: crashes() >= 3 and crashes(), what="three crashes")
    before = {d["name"]: d["id"] for d in ps(quick, "adopted") if d["type"] != "crashy"}
    quick.paas("run", "--detach", "-a", "adopted", "--", "sleep 4; echo finishing; exit 5")

    quick.stop_control_plane()
    assert "hello from web.1 v1" in quick.get("adopted").text  # nginx and dynos kept serving
    time.sleep(6)
    quick.up()
    wait_for_api(quick)

    # The crash count (and so the backoff) goes on where it was.
    assert eventually(lambda: crashes() >= 0 and crashes(), what="crashy reported") >= crashed
    eventually(lambda: "finishing" in logs(quick, "adopted", "--ps", "run.1"))
    run = eventually(lambda: (r := api_get(quick, "/v1/apps/adopted/dynos/run.1"))[
        "state"] == "exited" and r)
    assert run["exit_code"] == 5
    after = {d["name"]: d["id"] for d in ps(quick, "adopted") if d["type"] not in (
        "run", "crashy")}
    assert after == {k: v for k, v in before.items() if k != "run.1"}
    ticks = [int(n) for n in re.findall(r"tick (\d+)", logs(quick, "adopted", "--ps", "worker.1"))]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # nothing lost while away
    assert "hello from web.1 v1" in quick.get("adopted").text


def read_until(master: int, done: Callable[[str], bool], timeout: float = 90) -> str:
    """What a terminal shows, read from its master side until `done` or the end."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(seen.decode(errors="replace")):
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the program on the terminal has exited
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def run_in_terminal(platform: Platform, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """`paas ARGS` on a terminal of 33 rows and 101 columns, as a person types it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    process = subprocess.Popen([PAAS, *args], env={**platform.env, "TERM": "xterm"},
                               stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    return process, master


def test_run_with_a_terminal(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "terminal")
    quick.wait_for("terminal", "hello from web.1 v1")

    process, master = run_in_terminal(quick, "run", "-a", "terminal", "--", "sh")
    try:
        prompt = read_until(master, lambda seen: "$ " in seen)
        assert "$ " in prompt, prompt
        os.write(master, b"tty; stty size; echo $TERM $DYNO; echo $((6*7)); exit 3\r")
        shown = read_until(master, lambda _: False)
        assert process.wait(timeout=60) == 3, shown
    finally:
        os.close(master)
    assert re.search(r"^/dev/pts/\d+\r?$", shown, re.MULTILINE), shown
    assert re.search(r"^33 101\r?$", shown, re.MULTILINE), shown  # the client's window size
    assert re.search(r"^xterm run\.1\r?$", shown, re.MULTILINE), shown
    assert re.search(r"^42\r?$", shown, re.MULTILINE), shown

    # A client that goes away hangs the terminal up: the dyno ends, nothing is left running.
    process, master = run_in_terminal(quick, "run", "-a", "terminal", "--", "sh")
    try:
        assert "$ " in read_until(master, lambda seen: "$ " in seen)
        process.kill()
        process.wait(timeout=30)
    finally:
        os.close(master)
    eventually(lambda: api_get(quick, "/v1/apps/terminal/dynos/run.2")["state"] == "exited",
               timeout=60, what="the abandoned terminal's dyno ended")
    eventually(lambda: not [d for d in ps(quick, "terminal") if d["type"] == "run"],
               what="the abandoned terminal's dyno removed")


FAMILY_PROCFILE = (
    "web: exec /usr/bin/python3 server.py\n"
    "chatty: /usr/bin/python3 -c 'for i in range(1, 3001): print(\"chatty line\", i)'; "
    "exec sleep 600\n"
    # The parent does not pass SIGTERM on: the child gets it from the platform itself.
    "family: sh -c 'trap \"echo child got TERM; exit 0\" TERM; while true; do sleep 0.2; done' & "
    "trap 'echo parent got TERM; wait; exit 0' TERM; echo family ready; "
    "while true; do sleep 0.2; done\n")


def test_log_bound_and_sigterm_to_every_process(quick: Platform, tmp_path: Path) -> None:
    deploy(quick, tmp_path, "family", FAMILY_PROCFILE)
    quick.paas("ps:scale", "chatty=2", "-a", "family")

    def newest() -> list[dict[str, str]]:
        return json.loads(quick.paas("logs", "-a", "family", "-n", "5000", "--json").stdout)

    def settled() -> list[dict[str, str]] | None:
        """The log once both floods are in and nothing more comes."""
        first = newest()
        if not any(e.get("line") == "chatty line 3000" for e in first):
            return None
        time.sleep(1.5)
        return first if newest()[-1]["id"] == first[-1]["id"] else None

    # Like Heroku's, the log keeps the newest 1,500 lines, whatever is asked for.
    everything = eventually(settled, what="6,000 lines logged")
    assert len(everything) == 1500
    assert not any(e.get("line") == "chatty line 1" for e in everything)
    # A filtered read picks from those same 1,500 lines, not from older ones the stream
    # (trimmed approximately) still happens to hold.
    chatty1 = json.loads(quick.paas("logs", "-a", "family", "-n", "5000", "--json", "--ps",
                                    "chatty.1").stdout)
    assert chatty1 == [e for e in everything if e["source"].endswith("[chatty.1]")]

    quick.paas("ps:scale", "family=1", "-a", "family")
    eventually(lambda: "family ready" in logs(quick, "family", "--ps", "family.1"))
    quick.paas("ps:scale", "family=0", "-a", "family")
    eventually(lambda: not [d for d in ps(quick, "family") if d["type"] == "family"])
    text = eventually(lambda: "exited with status" in (
        t := logs(quick, "family", "--ps", "family.1")) and t, what="family.1's end")
    assert "paas[family.1]: Stopping all processes with SIGTERM" in text
    assert "app[family.1]: parent got TERM" in text
    assert "app[family.1]: child got TERM" in text
    assert "R12" not in text
    assert "paas[family.1]: Process exited with status 0" in text


def test_new_release_resets_backoff_and_run_forwards_stdin(quick: Platform,
                                                           tmp_path: Path) -> None:
    deploy(quick, tmp_path, "backoff")
    quick.paas("ps:scale", "crashy=1", "-a", "backoff")

    def restarts(release: int) -> int:
        return max([d["restarts"] for d in ps(quick, "backoff")
                    if d["type"] == "crashy" and d["release"] == release], default=0)

    before = eventually(lambda: restarts(1) >= 4 and restarts(1), what="four crashes")
    quick.paas("config:set", "COLOR=red", "-a", "backoff")
    # The new release's crashy.1 starts over: at once, then 1 s, 2 s... not after v1's backoff.
    eventually(lambda: 0 < restarts(2) < before, what="the backoff reset by a new release",
               explain=lambda: json.dumps(ps(quick, "backoff")) + logs(quick, "backoff"))
    assert "Starting process" in logs(quick, "backoff", "--ps", "crashy.1", "--source", "paas")

    # Without a terminal, `paas run` forwards its stdin, then its end.
    piped = subprocess.run([PAAS, "run", "-a", "backoff", "--", "sh", "-c",
                            'cat; echo "color=$COLOR"'], input="hello\nworld\n",
                           env=quick.env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == ["hello", "world", "color=red"], piped.stdout
    empty = subprocess.run([PAAS, "run", "-a", "backoff", "--", "wc", "-c"],
                           stdin=subprocess.DEVNULL, env=quick.env, capture_output=True,
                           text=True, timeout=120)
    assert empty.returncode == 0 and empty.stdout.strip() == "0", empty
    # An API client that attaches without sending input gives the one-off an empty stdin.
    with quick.api() as api:
        oneoff = api.post("/v1/apps/backoff/dynos", json={
            "command": "wc -c; echo done", "attach": True}).json()
        with api.stream("GET", f"/v1/apps/backoff/dynos/{oneoff['name']}/attach",
                        timeout=httpx.Timeout(30, read=120)) as response:
            messages = [json.loads(raw) for raw in response.iter_lines() if raw.strip()]
    assert messages == [{"line": "0"}, {"line": "done"}, {"exit_code": 0}], messages
