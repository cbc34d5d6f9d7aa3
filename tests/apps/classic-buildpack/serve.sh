#!/bin/sh
# Serves public/index.txt plus what .profile.d exported, on $PORT.
exec /usr/bin/python3 -c '
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("/app/public/index.txt").read() + os.environ.get("GREETING_FROM_PROFILE", "no profile") + "\n"
        self.send_response(200); self.send_header("Content-Type", "text/plain"); self.end_headers()
        self.wfile.write(body.encode())
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
'
