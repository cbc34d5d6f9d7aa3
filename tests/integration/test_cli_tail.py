"""`paas logs --tail` started while the platform does not answer waits for it (the API or its
Redis restarting), as the running tail does; without --tail the same refusal is an error."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.platform import PAAS, free_port


def test_a_tail_started_while_the_api_is_away_keeps_waiting() -> None:
    env = {**os.environ, "PAAS_API_URL": f"http://127.0.0.1:{free_port()}",
           "PAAS_API_TOKEN": "unused"}
    once = subprocess.run([PAAS, "logs", "-a", "web"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert once.returncode != 0 and "cannot reach the paas API" in once.stderr
    tail = subprocess.Popen([PAAS, "logs", "--tail", "-a", "web"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            tail.wait(8)
    finally:
        tail.kill()
        tail.wait()
