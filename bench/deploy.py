"""Push-to-live for a Flask and an Express app: cold (first push, nothing cached) and warm
(code-only push, dependency layer reused), the bytes the warm push added to the layer store
(read from the disk: the app layer plus the slug's manifest and image config) against the whole
slug's layers (what a push without reuse writes: the baseline; cold pushes of equal dependencies
are deduplicated across apps, so their store growth is no baseline), and the requests that
failed while the warm deploys rolled out. Prints ONE JSON line.

    PAAS_TEST_SUBNETS=217 .venv/bin/python -m bench.deploy [--runs 3]

`--stages`: where the time of a code-only redeploy of a small Flask app (one gunicorn sync
worker, `bench/apps/flask-gunicorn`) goes, read from the platform's own timestamps (the
database's build, release and dyno rows; the Redis ids of the build stream, the app log and
the router's applied-route log), and a config change; `bench/stages.py` reads them.

    PAAS_TEST_SUBNETS=217 .venv/bin/python -m bench.deploy --stages [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.platform import Platform, app_repo, commit_all, git

SAMPLES = {"flask": ("flask-hello", "app.py", "Hello from paas"),
           "express": ("express-hello", "src/greeting.txt", "Hello from Express on paas")}


class RequestLoop:
    """Requests the app through the router until stopped; counts the ones that failed."""

    def __init__(self, platform: Platform, app: str) -> None:
        self.platform, self.app = platform, app
        self.sent = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            try:
                if self.platform.get(self.app).status_code != 200:
                    self.failed += 1
            except httpx.HTTPError:
                self.failed += 1
            time.sleep(0.02)

    def __enter__(self) -> RequestLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def push_to_live(platform: Platform, repo: Path, app: str, text: str) -> float:
    start = time.monotonic()
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    if result.returncode != 0:
        raise SystemExit(f"push of {app} failed:\n{result.stderr}")
    platform.wait_for(app, text, timeout=120)
    return time.monotonic() - start


def stored_blobs(platform: Platform) -> dict[str, int]:
    """The layer store's blobs (name -> bytes), read from the disk, not from the build's report."""
    blobs = platform.home / "layers" / "blobs" / "sha256"
    if not blobs.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in blobs.iterdir() if not p.name.startswith(".")}


def slug_bytes(platform: Platform, app: str) -> int:
    """The compressed size of all layers of the app's latest slug: what a push without any
    reuse writes. Read from the OCI manifest and the blob files in the store."""
    info = json.loads(platform.paas("builds:info", "-a", app, "--json").stdout)
    blobs = platform.home / "layers" / "blobs" / "sha256"
    manifest = json.loads((blobs / info["manifest"][7:]).read_text())
    return sum((blobs / layer["digest"][7:]).stat().st_size for layer in manifest["layers"])


def added(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(blobs, bytes) that appeared in the store: layers, plus the slug's manifest and config."""
    new = set(after) - set(before)
    return len(new), sum(after[name] for name in new)


def measure(platform: Platform, tmp: Path, kind: str, runs: int) -> dict:
    sample, edit, text = SAMPLES[kind]
    cold, warm, full_bytes, warm_bytes, warm_blobs, sent, failed = [], [], [], [], [], 0, 0
    for run in range(runs):
        app = f"bench-{kind}-{run}"
        platform.paas("apps:create", app)
        repo = app_repo(tmp / f"{kind}-{run}", sample)
        # Unique code per run: the store would dedup equal app layers across runs.
        path = repo / edit
        path.write_text(path.read_text().replace(text, f"{text} (cold {run})"))
        commit_all(repo, "cold")
        # A fresh app has an empty build cache: the cold build installs every dependency.
        cold.append(push_to_live(platform, repo, app, f"{text} (cold {run})"))
        new_text = f"{text} (warm {run})"
        path.write_text(path.read_text().replace(f"{text} (cold {run})", new_text))
        commit_all(repo, "code only")
        before = stored_blobs(platform)
        with RequestLoop(platform, app) as loop:
            warm.append(push_to_live(platform, repo, app, new_text))
        blobs, new_bytes = added(before, stored_blobs(platform))
        warm_blobs.append(blobs)
        warm_bytes.append(new_bytes)
        full_bytes.append(slug_bytes(platform, app))
        sent, failed = sent + loop.sent, failed + loop.failed
        platform.paas("apps:destroy", app, "--confirm", app, check=False)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    slug_b, warm_b = statistics.median(full_bytes), statistics.median(warm_bytes)
    return {"cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2),
            "warm_over_cold": round(warm_s / cold_s, 3),
            "slug_bytes": int(slug_b), "warm_new_bytes": int(warm_b),
            "warm_over_slug_bytes": round(warm_b / slug_b, 5),
            "warm_new_blobs": int(statistics.median(warm_blobs)),
            "warm_requests": sent, "warm_failed_requests": failed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", action="store_true",
                        help="the stages of a code-only redeploy and a config change")
    args = parser.parse_args()
    if args.stages:
        from bench.stages import main as stages_main
        stages_main(args.runs)
        return
    platform = Platform.create()
    try:
        platform.up()
        with tempfile.TemporaryDirectory(prefix="paas-bench-") as tmp:
            figures = {kind: measure(platform, Path(tmp), kind, args.runs) for kind in SAMPLES}
    finally:
        platform.down()
    print(json.dumps({"bench": "deploy", "runs": args.runs, **figures}))


if __name__ == "__main__":
    main()
