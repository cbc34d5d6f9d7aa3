"""Dyno figures, printed as one JSON line (root, runc):

- start latency of a dyno (Runtime.start_dyno until the app's first output line), p50/p99
  over 50 starts, beside plain `runc run` of /bin/true in a minimal bundle, and their ratio;
- `ps:scale web=1 -> 10` on a whole platform: seconds until all 10 web dynos are up;
- the platform's memory per idle dyno beyond the app: its monitor (and any `runc` left),
  as PSS (shared pages split between the dynos that share them) with 10 idle dynos up, and
  as RSS.

Bounded: each phase has a deadline, a few minutes in all on a loaded 2-core machine.

Usage: PAAS_TEST_SUBNET=10.x.0.0/16 .venv/bin/python bench/dynos.py [--memory]

--memory prints only the figure "per-dyno platform memory PSS" (and RSS, and the `runc`
processes left resident per dyno) with 10 idle dynos up: a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paas import cgroups
from paas.runtime import DynoSpec, Runtime, oci
from paas.runtime.runc import runc_binary
from paas.settings import Settings
from tests.platform import Platform, app_repo, git

STARTS = 50
IDLE = 10  # dynos kept up together to measure the platform's memory per idle dyno
SCALE_DEADLINE = 300.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def plain_runc(base: Path) -> list[float]:
    bundle = base / "plain"
    oci.write_rootfs(bundle / "rootfs", oci.etc_files(10001, "plain", ""))
    config = oci.config_json(oci.ContainerConfig(
        hostname="plain", uid=10001, args=["/bin/true"], env={}, app_source=base / "layer",
        memory_mb=256, pids_limit=64, cgroups_path="/paas-bench/plain"))
    (bundle / "config.json").write_text(json.dumps(config))
    runc, root = runc_binary(), str(base / "runc-plain")
    times = []
    for i in range(STARTS):
        start = time.perf_counter()
        subprocess.run([runc, "--root", root, "run", "--bundle", str(bundle), f"plain{i}"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    cgroups.on_host().remove("paas-bench")
    return times


def dyno_starts(base: Path, subnet: str) -> tuple[list[float], tuple[float, float, float]]:
    """Start latencies; then the platform's PSS and RSS per dyno (MB) and its resident `runc`
    processes per dyno, with IDLE dynos up."""
    settings = Settings(home=base / "home", dyno_subnet=subnet)
    runtime = Runtime(settings)
    times = []
    try:
        for i in range(STARTS):
            spec = DynoSpec(id=f"bench-{i}", app="bench", app_index=9, uid=10001,
                            command=["/bin/sh", "-c", "echo ready; exec sleep 600"], env={},
                            layers=[base / "layer"], memory_mb=256, pids_limit=64,
                            metadata={})
            start = time.perf_counter()
            status = runtime.start_dyno(spec)
            deadline = time.monotonic() + 60
            while b"ready" not in status.log_path.read_bytes():
                if time.monotonic() > deadline:
                    raise SystemExit(f"dyno {spec.id} never printed: {status.log_path}")
                time.sleep(0.001)
            times.append(time.perf_counter() - start)
            if i < STARTS - IDLE:
                runtime.remove_dyno(spec.id)
        memory = idle_memory(runtime)
    finally:
        runtime.teardown()
    return times, memory


def idle_memory(runtime: Runtime) -> tuple[float, float, float]:
    """(PSS MB, RSS MB, resident `runc` processes) per dyno of the platform's processes for
    the dynos up, a second after the last start."""
    time.sleep(1)  # idle
    dynos = runtime.list_dynos()
    pids = [pid for d in dynos for pid in runtime.monitor_pids(d.id)]
    pss = sum(_memory_kb(pid, "smaps_rollup", "Pss:") for pid in pids) / len(dynos) / 1024
    rss = sum(_memory_kb(pid, "status", "VmRSS:") for pid in pids) / len(dynos) / 1024
    runcs = sum(_comm(pid) == "runc" for pid in pids) / len(dynos)
    return pss, rss, runcs


def per_dyno_memory(base: Path, subnet: str) -> dict[str, float]:
    """The figure "per-dyno platform memory PSS" alone: IDLE idle dynos up, nothing else."""
    runtime = Runtime(Settings(home=base / "home", dyno_subnet=subnet))
    try:
        for i in range(IDLE):
            runtime.start_dyno(DynoSpec(
                id=f"idle-{i}", app="bench", app_index=9, uid=10001,
                command=["/bin/sh", "-c", "echo ready; exec sleep 600"], env={},
                layers=[base / "layer"], memory_mb=256, pids_limit=64, metadata={}))
        pss, rss, runcs = idle_memory(runtime)
    finally:
        runtime.teardown()
    return {"per_dyno_platform_pss_mb": round(pss, 3),
            "per_dyno_platform_rss_mb": round(rss, 3),
            "resident_runc_per_dyno": runcs, "idle_dynos": IDLE}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _memory_kb(pid: int, name: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def scale_to_ten(base: Path) -> float:
    platform = Platform.create(PAAS_AGENT_INTERVAL="0.2")
    try:
        platform.up()
        platform.paas("apps:create", "bench")
        repo = app_repo(base, "procfile-only")
        git(repo, "push", platform.remote_url("bench"), "main")
        start = time.monotonic()
        platform.paas("ps:scale", "web=10", "-a", "bench")
        while time.monotonic() - start < SCALE_DEADLINE:
            dynos = json.loads(platform.paas("ps", "-a", "bench", "--json").stdout)
            if len([d for d in dynos if d["type"] == "web" and d["state"] == "up"]) >= 10:
                return time.monotonic() - start
            time.sleep(0.1)
        raise SystemExit(f"ps:scale web=10 not all up after {SCALE_DEADLINE:g} s")
    finally:
        platform.down()


def main() -> None:
    subnet = os.environ.get("PAAS_TEST_SUBNET", "10.215.0.0/16")
    base = Path(tempfile.mkdtemp(prefix="paas-bench-"))
    base.chmod(0o755)
    (base / "layer").mkdir(mode=0o755)
    if "--memory" in sys.argv[1:]:
        try:
            print(json.dumps(per_dyno_memory(base, subnet)))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    try:
        plain = plain_runc(base)
        dyno, (pss_mb, rss_mb, runcs) = dyno_starts(base, subnet)
        scale = scale_to_ten(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({
        "dyno_start_p50_ms": round(percentile(dyno, 0.5) * 1000, 1),
        "dyno_start_p99_ms": round(percentile(dyno, 0.99) * 1000, 1),
        "runc_true_p50_ms": round(percentile(plain, 0.5) * 1000, 1),
        "runc_true_p99_ms": round(percentile(plain, 0.99) * 1000, 1),
        "start_ratio_p50": round(percentile(dyno, 0.5) / percentile(plain, 0.5), 2),
        "start_ratio_p99": round(percentile(dyno, 0.99) / percentile(plain, 0.99), 2),
        "scale_1_to_10_s": round(scale, 2),
        "platform_pss_mb_per_idle_dyno": round(pss_mb, 2),
        "platform_rss_mb_per_idle_dyno": round(rss_mb, 2),
        "resident_runc_per_idle_dyno": runcs,
    }))


if __name__ == "__main__":
    main()
