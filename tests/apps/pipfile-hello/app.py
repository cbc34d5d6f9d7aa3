"""Serves which of the Pipfile.lock's packages the virtualenv holds."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


def installed(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"no {name}"


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        packages = ", ".join(installed(name) for name in ("itsdangerous", "pywin32", "pytest"))
        body = f"Hello from a Pipfile.lock app on paas ({packages})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Hello).serve_forever()
