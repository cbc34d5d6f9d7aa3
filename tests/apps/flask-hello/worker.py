from __future__ import annotations

import time

count = 0
while True:
    count += 1
    print(f"worker tick {count}", flush=True)
    time.sleep(1)
