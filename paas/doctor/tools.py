"""The programs the platform runs (runc, nginx with its Lua module, redis-server, git), their
versions, the dyno monitor `make setup` compiles, and the Debian packages it installs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from paas.doctor import Finding, passed, problem
from paas.errors import Unavailable
from paas.runtime import native
from paas.settings import Settings

AREA = "tools"
PACKAGES_FILE = Path(__file__).with_name("apt-packages.txt")
LUA_MODULES = Path("/usr/lib/nginx/modules")
# (program, version command, lowest version known to work: Debian 12's or older, package)
PROGRAMS = (
    ("runc", ["runc", "--version"], (1, 1), "runc"),
    ("nginx", ["nginx", "-v"], (1, 18), "nginx-light"),
    ("redis-server", ["redis-server", "--version"], (6, 0), "redis-server"),
    ("git", ["git", "--version"], (2, 30), "git"),
)


def check(settings: Settings) -> Iterator[Finding]:
    for name, command, lowest, package in PROGRAMS:
        yield _program(name, command, lowest, package)
    yield _lua_module()
    yield _dyno_monitor()
    yield _packages()


def version_of(text: str) -> tuple[int, ...] | None:
    """The first dotted version in a program's --version output."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def _program(name: str, command: list[str], lowest: tuple[int, ...], package: str) -> Finding:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10,
                                check=False)
    except FileNotFoundError:
        return problem(AREA, name, f"{name} is not installed", f"apt-get install {package}")
    version = version_of(result.stdout + result.stderr)
    shown = ".".join(map(str, version)) if version else "unknown"
    wanted = ".".join(map(str, lowest))
    if version is None or version < lowest:
        return problem(AREA, name, f"{name} {shown} is older than {wanted}",
                       f"apt-get install {package} (Debian 12 or newer)")
    return passed(AREA, name, f"{name} {shown}")


def _lua_module() -> Finding:
    needed = ("ndk_http_module.so", "ngx_http_lua_module.so")
    missing = [name for name in needed if not (LUA_MODULES / name).exists()]
    if missing:
        return problem(AREA, "nginx Lua module", f"{', '.join(missing)} missing from "
                       f"{LUA_MODULES}: the router cannot load its route table",
                       "apt-get install libnginx-mod-http-lua lua-resty-core")
    return passed(AREA, "nginx Lua module", "the router's nginx modules are installed")


def _dyno_monitor() -> Finding:
    try:
        path = native.dyno_monitor()
    except Unavailable as error:
        return problem(AREA, "dyno monitor", str(error), "make setup")
    return passed(AREA, "dyno monitor", f"{path} is built")


def apt_packages() -> list[str]:
    lines = PACKAGES_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _packages() -> Finding:
    wanted = apt_packages()
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *wanted],
                                capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return problem(AREA, "apt packages", "not a Debian host (no dpkg-query): install the "
                       f"equivalents of {', '.join(wanted)}", "see README, Supported hosts",
                       fatal=False)
    installed = {line.split()[0] for line in result.stdout.splitlines()
                 if line.endswith("install ok installed")}
    missing = [name for name in wanted if name not in installed]
    if missing:
        return problem(AREA, "apt packages", f"not installed: {' '.join(missing)}",
                       f"apt-get install {' '.join(missing)} (or make setup)", fatal=False)
    return passed(AREA, "apt packages", f"all {len(wanted)} installed")
