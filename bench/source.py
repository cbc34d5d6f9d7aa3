"""The memory a huge pushed tree costs the platform: a push of a small pack of a file of zeros
larger than PAAS_MAX_SOURCE_MB (refused by the receiver) and of one just under it (built and
deployed), on a platform of its own. For each: the objects' size, the push's wall time, and how
much the API's and the worker's peak resident memory grew (the larger of their VmHWM and the
sampled RSS of each process tree, git helpers included). Prints ONE JSON line.

    PAAS_TEST_SUBNETS=217 .venv/bin/python -m bench.source [--cap-mb 300] [--over-mb 600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from tests.platform import Platform, app_repo, commit_all, git
from tests.services import Growth


def zeros_repo(base: Path, name: str, megabytes: int) -> Path:
    repo = app_repo(base / name, "procfile-only")
    with (repo / "zeros.bin").open("wb") as f:
        f.truncate(megabytes << 20)
    commit_all(repo, f"{megabytes} MB of zeros")
    return repo


def objects_kb(repo: Path) -> float:
    """The pushed repository's objects on disk, compressed (about what the push sends)."""
    out = git(repo, "count-objects", "-v").stdout
    sizes = dict(line.split(": ") for line in out.splitlines())
    return int(sizes["size-pack"]) + int(sizes["size"])


def measure(platform: Platform, repo: Path, app: str) -> dict[str, object]:
    platform.paas("apps:create", app)
    started = time.monotonic()
    with Growth(platform) as growth:
        push = subprocess.run(["git", "push", platform.remote_url(app), "main"], cwd=repo,
                              capture_output=True, text=True, timeout=900)
    return {"accepted": push.returncode == 0, "seconds": round(time.monotonic() - started, 2),
            "objects_kb": objects_kb(repo),
            "grown_mb": {name: round(mb, 1) for name, mb in growth.grown_mb().items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap-mb", type=int, default=300)
    parser.add_argument("--over-mb", type=int, default=600)
    args = parser.parse_args()
    under_mb = args.cap_mb - 20
    platform = Platform.create(PAAS_MAX_SOURCE_MB=str(args.cap_mb),
                               PAAS_MAX_SOURCE_FILE_MB=str(max(args.over_mb, args.cap_mb)))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            platform.up()
            over = measure(platform, zeros_repo(Path(tmp), "over", args.over_mb), "over")
            under = measure(platform, zeros_repo(Path(tmp), "under", under_mb), "under")
        finally:
            platform.down()
    print(json.dumps({"bench": "source", "cap_mb": args.cap_mb,
                      f"over_{args.over_mb}_mb": over, f"under_{under_mb}_mb": under}))


if __name__ == "__main__":
    main()
