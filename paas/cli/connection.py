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


def save_credentials(values: dict[str, str]) -> Path:
    """Writes the credentials file (0600, in a 0700 directory), replacing it whole."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2)
    os.replace(tmp, path)
    return path


def forget_credentials() -> bool:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def anonymous_client() -> ApiClient:
    return ApiClient(api_url(), None)


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
