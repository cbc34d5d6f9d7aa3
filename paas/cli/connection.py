"""Where the CLI finds the API and its token."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from paas.client import ApiClient
from paas.errors import Invalid, Unauthorized
from paas.settings import load

GIT_URL = re.compile(r"/git/([a-z][a-z0-9-]{1,29})\.git/?$")


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "paas" / "credentials.json"


def saved_credentials() -> dict[str, str]:
    try:
        return json.loads(credentials_path().read_text())
    except (FileNotFoundError, ValueError):
        return {}


def api_url() -> str:
    return os.environ.get("PAAS_API_URL") or saved_credentials().get("api_url") or load().api_url


def token() -> str:
    """PAAS_API_TOKEN, then `paas login`'s saved token, then the host's admin token."""
    found = os.environ.get("PAAS_API_TOKEN") or saved_credentials().get("token")
    if found:
        return found
    try:
        return load().admin_token_path.read_text().strip()
    except OSError:
        raise Unauthorized("no API token: run `paas login`, or set PAAS_API_TOKEN") from None


def client() -> ApiClient:
    return ApiClient(api_url(), token())


def app_from_git_remote() -> str:
    """The app of the current directory's git remote that points at this platform."""
    try:
        out = subprocess.run(["git", "config", "--get-regexp", r"^remote\..*\.url$"],
                             capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        out = ""
    base = api_url().rstrip("/")
    apps = {m.group(1) for line in out.splitlines()
            if (url := line.split(" ", 1)[-1]) and _same_host(url, base)
            and (m := GIT_URL.search(url))}
    if len(apps) == 1:
        return apps.pop()
    hint = " (several remotes point at paas)" if apps else ""
    raise Invalid(f"which app? pass -a APP{hint}, or run in a clone with a paas git remote")


def _same_host(url: str, base: str) -> bool:
    strip = re.compile(r"^https?://(?:[^@/]*@)?")
    return strip.sub("", url).startswith(strip.sub("", base))
