"""The app of the deploy stages benchmark (as the peer benchmark's): `/` and `/<VAR>`."""
import os

from flask import Flask, abort

app = Flask(__name__)

BODY = "python/flask"


@app.route("/")
def index() -> str:
    return BODY


@app.route("/<name>")
def config_var(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        abort(404)
    return value
