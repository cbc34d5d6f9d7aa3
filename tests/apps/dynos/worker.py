"""A worker for the dyno tests: counts, and says goodbye on SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time


def on_term(_signum: int, _frame: object) -> None:
    print(f"{os.environ['DYNO']} got SIGTERM, exiting", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    count = 0
    while True:
        count += 1
        print(f"tick {count}", flush=True)
        time.sleep(0.3)
