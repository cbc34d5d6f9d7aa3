from __future__ import annotations

import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    greeting = os.environ.get("GREETING")
    return "Hello from paas" + (f"\n{greeting}" if greeting else "") + "\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
