"""The API's SSH git port listens from the start, but asyncssh is loaded only when the first
client connects (paas/git/ssh_listen.py); that client is then served. Run in a fresh
interpreter, since this one may have loaded asyncssh already."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, socket, sys
from paas.git.ssh_listen import ssh_lifespan
from paas.settings import Settings

async def main(home):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(home=home, ssh_port=port, api_host="127.0.0.1")
    async with ssh_lifespan(None, settings)(None):
        before = "asyncssh" in sys.modules
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        banner = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        print(before, "asyncssh" in sys.modules, banner.decode().strip())

asyncio.run(main(__import__("pathlib").Path(sys.argv[1])))
"""


def test_the_ssh_port_listens_at_start_and_loads_asyncssh_at_the_first_client(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    before, after, banner = done.stdout.split(maxsplit=2)
    assert (before, after) == ("False", "True")
    assert banner.startswith("SSH-2.0-")  # served by asyncssh
    assert (tmp_path / "ssh_host_ed25519_key").is_file()
