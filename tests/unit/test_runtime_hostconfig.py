from __future__ import annotations

from pathlib import Path

from paas.runtime.hostconfig import (
    absolute_paths,
    bindable,
    client_config,
    merged_npmrc,
    merged_pip_conf,
    passthrough_env,
)


def test_later_pip_configs_win(tmp_path: Path) -> None:
    low, high = tmp_path / "xdg.conf", tmp_path / "user.conf"
    low.write_text("[global]\nindex-url = file:///low\ntimeout = 5\n")
    high.write_text("[global]\nindex-url = file:///high\n[install]\nno-cache-dir = 1\n")
    merged = merged_pip_conf([low, tmp_path / "missing.conf", high])
    assert "index-url = file:///high" in merged
    assert "timeout = 5" in merged
    assert "[install]" in merged
    assert merged_pip_conf([tmp_path / "missing.conf"]) == ""


def test_npmrcs_are_concatenated_lowest_precedence_first(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("fund=false\n")
    second.write_text("fund=true")
    assert merged_npmrc([first, second]) == "fund=false\nfund=true\n"
    assert merged_npmrc([tmp_path / "none"]) == ""


def test_absolute_paths_include_file_urls_and_index_roots() -> None:
    text = "file:///opt/idx/simple file:///srv/a%20b /etc/c.txt https://example.invalid/x //net"
    assert absolute_paths(text) == [Path("/opt/idx"), Path("/srv/a b"), Path("/etc/c.txt")]


def test_bindable_keeps_existing_outermost_paths_not_already_visible(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    paths = [tmp_path / "inner", tmp_path, tmp_path / "absent", Path("/usr/lib"), Path("/etc")]
    assert bindable(paths) == [tmp_path]


def test_passthrough_env_takes_client_and_proxy_variables() -> None:
    environ = {
        "PIP_INDEX_URL": "x",
        "npm_config_cache": "y",
        "NPM_CONFIG_REGISTRY": "z",
        "https_proxy": "p",
        "NO_PROXY": "n",
        "HOME": "/root",
        "PAAS_HOME": "/var/lib/paas",
    }
    assert set(passthrough_env(environ)) == {
        "PIP_INDEX_URL", "npm_config_cache", "NPM_CONFIG_REGISTRY", "https_proxy", "NO_PROXY",
    }  # fmt: skip


def test_client_config_collects_files_env_and_paths(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nfind-links = {wheels}\n")
    npmrc = tmp_path / "npmrc"
    npmrc.write_text("fund=false\n")
    config = client_config({"PIP_CONSTRAINT": str(pip_conf)}, [pip_conf], [npmrc])
    assert set(config.files) == {"pip.conf", "npmrc"}
    assert config.env == {"PIP_CONSTRAINT": str(pip_conf), "NPM_CONFIG_GLOBALCONFIG": "/etc/npmrc"}
    assert config.paths == [tmp_path / "pip.conf", wheels]
