"""The python buildpack's installers, end to end: uv (the default) and pip (PAAS_PYTHON_INSTALLER
=pip) both install from the index an app names in PIP_INDEX_URL, here a tiny simple index served
on SERVED_ON (which test platforms open to builds) holding the one wheel no other index has."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from tests.e2e.test_buildpacks import build_info, push
from tests.platform import SERVED_ON, Platform, commit_all, git

pytestmark = pytest.mark.e2e

PROBE = "paas-index-probe"
MODULE = "paas_index_probe"


def make_wheel(directory: Path, version: str) -> Path:
    """A pure-Python wheel of PROBE whose module says where it came from."""
    dist = f"{MODULE}-{version}"
    files = {
        f"{MODULE}/__init__.py": f'SAID = "probe {version} from the app\'s own index"\n',
        f"{dist}.dist-info/METADATA": (f"Metadata-Version: 2.1\nName: {PROBE}\n"
                                       f"Version: {version}\n"),
        f"{dist}.dist-info/WHEEL": ("Wheel-Version: 1.0\nGenerator: paas-tests\n"
                                    "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


class _Handler(http.server.SimpleHTTPRequestHandler):
    requested: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requested.append(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}")


@contextmanager
def simple_index(base: Path, version: str) -> Iterator[tuple[str, list[str]]]:
    """A PEP 503 index of PROBE on SERVED_ON; yields its URL and the requests it served."""
    project = base / "simple" / PROBE
    project.mkdir(parents=True)
    wheel = make_wheel(base, version)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (project / "index.html").write_text(
        f'<html><body><a href="../../{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>\n')
    requested: list[str] = []
    handler = type("Handler", (_Handler,), {"requested": requested})
    server = http.server.ThreadingHTTPServer((SERVED_ON, 0),
                                             partial(handler, directory=str(base)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{SERVED_ON}:{server.server_port}/simple", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


APP = """import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from paas_index_probe import SAID


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (SAID + MARK + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


MARK = ""
HTTPServer(("", int(os.environ["PORT"])), Page).serve_forever()
"""


def probe_app(base: Path, version: str) -> Path:
    """An app whose only requirement is PROBE (no other index needed: the standard library
    serves the page)."""
    repo = base / "probe"
    repo.mkdir(parents=True)
    (repo / "requirements.txt").write_text(f"{PROBE}=={version}\n")
    (repo / "app.py").write_text(APP)
    (repo / "Procfile").write_text("web: python app.py\n")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "a requirement only the app's index has")
    return repo


def test_uv_and_pip_install_from_the_apps_pip_index_url(platform: Platform,
                                                        tmp_path: Path) -> None:
    platform.paas("apps:create", "own-index")
    with simple_index(tmp_path / "index", "1.0") as (url, requested):
        platform.paas("config:set", f"PIP_INDEX_URL={url}", "-a", "own-index")
        repo = probe_app(tmp_path / "uv", "1.0")
        pushed = push(platform, repo, "own-index")
        assert pushed.returncode == 0, pushed.stderr
        assert "Installing dependencies from requirements.txt with uv" in pushed.stderr
        assert f"Looking in indexes: {url}" in pushed.stderr
        assert f"+ {PROBE}==1.0" in pushed.stderr
        assert f"GET /simple/{PROBE}/ 200" in requested
        assert any(line.startswith(f"GET /{MODULE}-1.0-py3-none-any.whl 200")
                   for line in requested)
        assert platform.get("own-index").text == "probe 1.0 from the app's own index\n"

        # The opt-out: pip, with the same config var, in a virtualenv of its own (with pip).
        requested.clear()
        platform.paas("config:set", "PAAS_PYTHON_INSTALLER=pip", "-a", "own-index")
        app = repo / "app.py"
        app.write_text(app.read_text().replace('MARK = ""', 'MARK = "!"'))
        commit_all(repo, "with pip")
        pushed = push(platform, repo, "own-index")
        assert pushed.returncode == 0, pushed.stderr
        assert "Installing dependencies from requirements.txt with pip" in pushed.stderr
        assert "Reusing virtualenv" not in pushed.stderr
        assert "Successfully installed" in pushed.stderr and PROBE in pushed.stderr
        assert f"GET /simple/{PROBE}/ 200" in requested
    assert platform.get("own-index").text == "probe 1.0 from the app's own index!\n"
    venv = next(layer for layer in build_info(platform, "own-index")["layers"]
                if layer["name"] == "python/venv")
    assert not venv["reused"]
