"""The host's package-client configuration (pip, npm), made visible inside build containers.

The host's config files are merged into one generated file per client, the environment
variables of those clients pass through, and every absolute path they mention (a local index,
a wheel directory, a constraints file, a CA bundle) is bound read-only at the same place.
"""

from __future__ import annotations

import configparser
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

# Lowest precedence first, as pip loads them (site_config_dirs, then the legacy and XDG user files).
PIP_CONFIGS = (
    Path("/etc/xdg/pip/pip.conf"),
    Path("/etc/pip.conf"),
    Path("/root/.pip/pip.conf"),
    Path("/root/.config/pip/pip.conf"),
)
NPM_CONFIGS = (
    Path("/usr/etc/npmrc"),
    Path("/etc/npmrc"),
    Path("/root/.npmrc"),
)
PASSTHROUGH = re.compile(r"^(PIP_|NPM_CONFIG_|npm_config_)|^(https?_proxy|no_proxy)$", re.I)
ALREADY_VISIBLE = ("/usr", "/etc/ssl/certs")
NEVER_BIND = (
    "/", "/proc", "/sys", "/dev", "/etc", "/root", "/home", "/tmp", "/var", "/run",
    "/etc/pip.conf", "/etc/npmrc", "/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf",
)  # fmt: skip


@dataclass(frozen=True)
class ClientConfig:
    files: dict[str, str]
    env: dict[str, str]
    paths: list[Path]


def merged_pip_conf(paths: Iterable[Path]) -> str:
    parser = configparser.RawConfigParser()
    for path in paths:
        if path.is_file():
            parser.read(path)
    if not parser.sections():
        return ""
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def merged_npmrc(paths: Iterable[Path]) -> str:
    chunks = [path.read_text().rstrip("\n") for path in paths if path.is_file()]
    chunks = [chunk for chunk in chunks if chunk.strip()]
    return "\n".join(chunks) + "\n" if chunks else ""


def passthrough_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in environ.items() if PASSTHROUGH.search(key)}


def absolute_paths(text: str) -> list[Path]:
    found = []
    for token in re.split(r"[\s=,;\"']+", text):
        if token.startswith("file://"):
            token = unquote(urlparse(token).path)
            # A local PEP 503 index links its files relative to the index root, beside simple/.
            if Path(token).name == "simple":
                token = str(Path(token).parent)
        if token.startswith("/") and not token.startswith("//"):
            found.append(Path(os.path.normpath(token)))
    return found


def bindable(paths: Iterable[Path]) -> list[Path]:
    """Existing paths not already visible, without paths nested in another one kept."""
    chosen: list[Path] = []
    for path in sorted({p for p in paths if p.exists()}, key=lambda p: (len(p.parts), str(p))):
        text = str(path)
        if text in NEVER_BIND or any(text.startswith(v) for v in ALREADY_VISIBLE):
            continue
        if any(path.is_relative_to(parent) for parent in chosen):
            continue
        chosen.append(path)
    return chosen


def client_config(
    environ: Mapping[str, str],
    pip_configs: Iterable[Path] = PIP_CONFIGS,
    npm_configs: Iterable[Path] = NPM_CONFIGS,
) -> ClientConfig:
    files: dict[str, str] = {}
    env = passthrough_env(environ)
    pip_conf = merged_pip_conf(pip_configs)
    if pip_conf:
        files["pip.conf"] = pip_conf
    npmrc = merged_npmrc(npm_configs)
    if npmrc:
        files["npmrc"] = npmrc
        env.setdefault("NPM_CONFIG_GLOBALCONFIG", "/etc/npmrc")
    mentioned = " ".join([pip_conf, npmrc, *env.values()])
    return ClientConfig(files=files, env=env, paths=bindable(absolute_paths(mentioned)))
