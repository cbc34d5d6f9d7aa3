"""The python buildpack's translation of pip's settings into uv's (buildpacks/python/lib/uvconf.py)
and the uv binary the platform binds into builds (paas/builder/tools.py)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

from paas.builder.tools import platform_uv

UVCONF = Path(__file__).resolve().parents[2] / "buildpacks" / "python" / "lib" / "uvconf.py"
_spec = importlib.util.spec_from_file_location("uvconf", UVCONF)
assert _spec and _spec.loader
uvconf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(uvconf)


def translate(files: list[Path], environ: dict[str, str]) -> tuple[dict, list, list]:
    return uvconf.uv_settings(uvconf.pip_settings(environ, files), environ)


def test_this_machines_kind_of_pip_config_becomes_uvs(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        "constraint = /etc/xdg/pip/constraints.txt\n"
        "extra-index-url = file:///opt/pypi/simple\n  file:///opt/pypi-more/simple\n"
        "find-links = /opt/wheels\ndisable-pip-version-check = 1\n"
        "[install]\ntrusted-host = mirror.internal:8080 other.internal\n"
        "[freeze]\nindex-url = http://ignored/simple\n")
    env, flags, notices = translate([conf], {"PIP_DEFAULT_TIMEOUT": "180", "PIP_RETRIES": "0"})
    assert env == {
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
        "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
        "UV_FIND_LINKS": "/opt/wheels",
        "UV_INSECURE_HOST": "mirror.internal:8080 other.internal",
        "UV_HTTP_TIMEOUT": "180",
        "UV_HTTP_RETRIES": "0",
    }
    assert flags == [] and notices == []


def test_the_apps_pip_settings_win_over_the_hosts_and_its_uv_settings_over_both(
        tmp_path: Path) -> None:
    low, high = tmp_path / "site.conf", tmp_path / "user.conf"
    low.write_text("[global]\nindex-url = http://low/simple\nfind-links = /a /b\n")
    high.write_text("[global]\nindex-url = http://high/simple\n")
    env, _, _ = translate([low, tmp_path / "missing.conf", high], {})
    assert env == {"UV_INDEX_URL": "http://high/simple", "UV_FIND_LINKS": "/a,/b"}
    # The app's config vars are exported over the host's PIP_* before the translation runs.
    app = {"PIP_INDEX_URL": "http://app/simple", "PIP_FIND_LINKS": "/app/wheels",
           "PIP_TRUSTED_HOST": "app.internal", "PIP_EXTRA_INDEX_URL": "http://x/simple",
           "UV_EXTRA_INDEX_URL": "http://uv-own/simple"}
    env, _, _ = translate([low, high], app)
    assert env == {"UV_INDEX_URL": "http://app/simple", "UV_FIND_LINKS": "/app/wheels",
                   "UV_INSECURE_HOST": "app.internal"}  # UV_EXTRA_INDEX_URL: the app's own


def test_flags_and_settings_uv_goes_without(tmp_path: Path) -> None:
    env, flags, notices = translate([], {"PIP_NO_INDEX": "1", "PIP_PRE": "yes",
                                         "PIP_REQUIRE_HASHES": "0", "PIP_NO_BINARY": ":all:",
                                         "PIP_CERT": str(tmp_path)})
    assert flags == ["--no-index"]
    assert env == {"UV_PRERELEASE": "allow", "SSL_CERT_DIR": str(tmp_path)}
    assert len(notices) == 1
    assert "pip's no-binary (PIP_NO_BINARY) has no uv equivalent" in notices[0]


def test_config_files_in_pips_order() -> None:
    files = uvconf.config_files({"HOME": "/h", "XDG_CONFIG_DIRS": "/x1:/x2",
                                 "PIP_CONFIG_FILE": "/c.conf"})
    assert files == [Path("/x1/pip/pip.conf"), Path("/x2/pip/pip.conf"), Path("/etc/pip.conf"),
                     Path("/h/.pip/pip.conf"), Path("/h/.config/pip/pip.conf"), Path("/c.conf")]
    assert uvconf.config_files({"PIP_CONFIG_FILE": os.devnull}) == []


def test_the_script_prints_shell_that_bash_can_eval(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://u:p@host/simple?a=1&b='2'\n")
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path),
               "PIP_CONFIG_FILE": str(conf), "PIP_NO_INDEX": "1"}
    out = subprocess.run(
        ["bash", "-c", f'eval "$({shlex.quote(sys.executable)} {UVCONF})"; '
                       'printf "%s\\n" "$UV_INDEX_URL" "${uv_flags[@]}"'],
        env=environ, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["http://u:p@host/simple?a=1&b='2'", "--no-index"]


def test_platform_uv_is_the_venvs_own_file_and_refuses_writable_ones(tmp_path: Path) -> None:
    found = platform_uv()
    assert found is not None and found.name == "uv" and found.parent == Path(sys.executable).parent
    (tmp_path / "uv").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "uv").chmod(0o755)
    assert platform_uv(tmp_path) == tmp_path / "uv"
    (tmp_path / "uv").chmod(0o775)
    assert platform_uv(tmp_path) is None
    (tmp_path / "uv").chmod(0o644)
    assert platform_uv(tmp_path) is None
    assert platform_uv(tmp_path / "missing") is None


def test_platform_uv_refuses_a_file_of_another_user(tmp_path: Path) -> None:
    uv = tmp_path / "uv"
    uv.write_bytes(b"#!/bin/sh\n")
    uv.chmod(stat.S_IRWXU)
    os.chown(uv, 10051, 10051)
    assert platform_uv(tmp_path) is None


def test_the_build_says_where_uv_looks_without_credentials() -> None:
    env = {"UV_INDEX_URL": "http://pip:s3cr3t@host:81/simple",
           "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple", "UV_FIND_LINKS": "/opt/wheels,/w"}
    assert uvconf.looking_in(env, []) == [
        "Looking in indexes: http://***@host:81/simple, file:///opt/pypi/simple",
        "Looking in links: /opt/wheels, /w"]
    assert uvconf.looking_in({}, []) == ["Looking in indexes: uv's default"]
    assert uvconf.looking_in({}, ["--no-index"]) == []
