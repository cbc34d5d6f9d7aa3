"""A web process for the dyno tests: says who answered, can fail its health check on purpose,
and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def on_term(_signum: int, _frame: object) -> None:
    print(f"{os.environ['DYNO']} got SIGTERM, exiting", flush=True)
    sys.exit(0)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            body = os.environ.get("HEALTH_BODY", "ok")
        else:
            body = (f"{os.environ.get('GREETING', 'hello')} from {os.environ['DYNO']} "
                    f"{os.environ['PAAS_RELEASE_VERSION']}")
        data = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    print(f"listening on {os.environ['PORT']}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
