"""usage: python3 lib/uvconf.py — prints the shell lines (`export NAME=value`, `uv_flags=(...)`)
that give uv the settings pip would use in this build container.

uv reads neither pip.conf nor PIP_*. pip's view here is the host's pip config (merged into
/etc/pip.conf by the platform, the paths it names bound read-only), the host's PIP_* variables
and, exported over those, the app's config vars (PIP_INDEX_URL...). Files load in pip's order,
[global] then [install], and the environment wins over files, as in pip. A UV_* variable that is
set already (an app's config var) is left alone: the app's own uv setting wins. Settings uv has
no equivalent for are named on stderr.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from pathlib import Path

# pip option -> uv variable; values are pip's whitespace-separated lists where pip takes several.
LISTS = {
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "trusted-host": ("UV_INSECURE_HOST", " "),
    "constraint": ("UV_CONSTRAINT", " "),
}
SINGLE = {
    "index-url": "UV_INDEX_URL",
    "client-cert": "SSL_CLIENT_CERT",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
    "retries": "UV_HTTP_RETRIES",
}
FLAGS = {
    "no-index": ("--no-index", None),
    "pre": (None, ("UV_PRERELEASE", "allow")),
    "require-hashes": (None, ("UV_REQUIRE_HASHES", "1")),
}
# Settings of pip's own behaviour, or that the buildpack sets itself: nothing for uv to know.
IGNORED = {
    "disable-pip-version-check", "no-input", "progress-bar", "cache-dir", "no-cache-dir",
    "quiet", "verbose", "no-color", "root-user-action", "no-warn-script-location",
    "no-python-version-warning", "exists-action", "python-version-check", "log", "isolated",
    "config-settings", "use-feature", "use-deprecated", "yes",
}
TRUE = {"1", "yes", "true", "on"}
_USERINFO = re.compile(r"(?<=://)[^\s/?#]+@")


def _normal(name: str) -> str:
    return name.lower().lstrip("-").replace("_", "-")


def config_files(environ: dict[str, str]) -> list[Path]:
    """pip's config files, lowest precedence first (site, user, then PIP_CONFIG_FILE)."""
    config_file = environ.get("PIP_CONFIG_FILE")
    if config_file == os.devnull:
        return []
    dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    home = Path(environ.get("HOME") or "/nonexistent")
    files = [Path(d) / "pip" / "pip.conf" for d in dirs.split(":") if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", home / ".config/pip/pip.conf"]
    if config_file:
        files.append(Path(config_file))
    return files


def pip_settings(environ: dict[str, str], files: list[Path]) -> dict[str, tuple[str, str]]:
    """option -> (value, where it came from), as pip would see them for `pip install`."""
    settings: dict[str, tuple[str, str]] = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error) as err:
            print(f"Warning: could not read {path}: {err}", file=sys.stderr)
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    settings[_normal(key)] = (value.strip(), str(path))
    for key, value in environ.items():
        if key.startswith("PIP_") and key != "PIP_CONFIG_FILE":
            settings[_normal(key[4:])] = (value.strip(), key)
    return settings


def uv_settings(
    settings: dict[str, tuple[str, str]], environ: dict[str, str]
) -> tuple[dict[str, str], list[str], list[str]]:
    """(uv's variables, uv pip install flags, notices)."""
    env: dict[str, str] = {}
    flags: list[str] = []
    notices: list[str] = []
    for option, (value, source) in sorted(settings.items()):
        if option in LISTS:
            name, sep = LISTS[option]
            env[name] = sep.join(value.split())
        elif option in SINGLE:
            env[SINGLE[option]] = value
        elif option in FLAGS:
            flag, variable = FLAGS[option]
            if value.lower() in TRUE:
                if flag:
                    flags.append(flag)
                if variable:
                    env[variable[0]] = variable[1]
        elif option == "cert":
            env["SSL_CERT_DIR" if Path(value).is_dir() else "SSL_CERT_FILE"] = value
        elif option not in IGNORED:
            notices.append(f"pip's {option} ({source}) has no uv equivalent here: uv goes "
                           "without it (PAAS_PYTHON_INSTALLER=pip builds with pip)")
    # The app's own UV_* (or SSL_*) config vars win over translated pip settings.
    env = {key: value for key, value in env.items() if key not in environ}
    return env, flags, notices


def looking_in(env: dict[str, str], flags: list[str]) -> list[str]:
    """What pip would say it looks in (as pip does, without URL credentials)."""
    def split(value: str, sep: str = " ") -> list[str]:
        return [_USERINFO.sub("***@", item) for item in value.replace(sep, " ").split()]

    indexes = [] if "--no-index" in flags else (
        split(env.get("UV_INDEX_URL") or env.get("UV_DEFAULT_INDEX") or "") or ["uv's default"])
    indexes += split(env.get("UV_EXTRA_INDEX_URL", "")) + split(env.get("UV_INDEX", ""))
    lines = [f"Looking in indexes: {', '.join(indexes)}"] if indexes else []
    if links := split(env.get("UV_FIND_LINKS", ""), ","):
        lines.append(f"Looking in links: {', '.join(links)}")
    return lines


def main() -> None:
    environ = dict(os.environ)
    env, flags, notices = uv_settings(pip_settings(environ, config_files(environ)), environ)
    for line in [*notices, *looking_in({**environ, **env}, flags)]:
        print(line, file=sys.stderr)
    for key, value in sorted(env.items()):
        print(f"export {key}={shlex.quote(value)}")
    print(f"uv_flags=({shlex.join(flags)})")


if __name__ == "__main__":
    main()
