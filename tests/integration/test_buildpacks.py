"""The buildpack runner with real build containers (runc), the built-in buildpacks and apps."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from paas.builder import disk
from paas.builder.buildpacks import BuildFailed, BuildResult, build_app
from paas.runtime import Runtime
from paas.settings import Settings
from paas.slugs.layers import LayerStore
from tests.gate import BuildGate

UID = 10050
APPS = Path(__file__).resolve().parents[1] / "apps"


@dataclass
class Env:
    base: Path
    settings: Settings
    runtime: Runtime
    store: LayerStore
    logs: dict[str, list[str]] = field(default_factory=dict)

    def app(self, name: str, copy_of: str | None = None) -> Path:
        path = self.base / "src" / name
        if copy_of:
            shutil.copytree(APPS / copy_of, path, symlinks=True)
        else:
            path.mkdir(parents=True)
        return path

    def build(
        self,
        source: Path,
        cache: str,
        *,
        config_vars: dict[str, str] | None = None,
        previous: set[str] | None = None,
    ) -> tuple[BuildResult, list[str]]:
        lines: list[str] = []
        self.logs[source.name] = lines
        result = build_app(
            source=source,
            cache_dir=self.base / "cache" / cache,
            uid=UID,
            config_vars=config_vars or {},
            settings=self.settings,
            runtime=self.runtime,
            store=self.store,
            log=lines.append,
            previous_digests=previous,
        )
        return result, lines

    def in_cache(self, cache: str, rel: str) -> bool:
        """Whether the app's build cache holds rel (mounted only while a build runs)."""
        cache_dir = self.base / "cache" / cache
        with disk.cache(self.settings, cache_dir):
            return (cache_dir / rel).exists()

    def links_in_cache(self, cache: str, rel: str) -> int:
        """The hard link count of a file in the app's build cache."""
        cache_dir = self.base / "cache" / cache
        with disk.cache(self.settings, cache_dir):
            return (cache_dir / rel).stat().st_nlink


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    base = Path(tempfile.mkdtemp(prefix="paas-bp-", dir="/tmp"))
    base.chmod(0o755)
    settings = Settings(home=base / "home", build_timeout=240)
    settings.home.mkdir(mode=0o755)
    runtime = Runtime(settings)
    try:
        yield Env(base, settings, runtime, LayerStore(settings))
    finally:
        runtime.teardown()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def flask_first(env: Env) -> tuple[BuildResult, list[str]]:
    return env.build(env.app("flask-1", "flask-hello"), "flask")


def by_name(result: BuildResult) -> dict[str, str]:
    return {layer.name: layer.digest for layer in result.layers}


def test_flask_app_builds_a_venv_layer_and_an_app_layer(
    env: Env, flask_first: tuple[BuildResult, list[str]]
) -> None:
    result, log = flask_first
    assert result.buildpacks == ["python"]
    assert [layer.name for layer in result.layers] == ["python/venv", "app"]
    assert not any(layer.reused for layer in result.layers)
    assert result.process_types == {"web": "python app.py", "worker": "python worker.py"}
    assert result.env["PATH"] == "/app/.layers/python/venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert result.env["VIRTUAL_ENV"] == "/app/.layers/python/venv"
    text = "\n".join(log)
    assert "-----> Installing dependencies from requirements.txt with uv" in text
    assert "-----> Layers" in log
    assert any(line.startswith("       python/venv") and line.endswith("new") for line in log)
    with tarfile.open(env.store.blobs.path(by_name(result)["python/venv"])) as tar:
        names = tar.getnames()
    assert any(
        name.startswith(".layers/python/venv/lib/python3") and "/flask/" in name for name in names
    )
    with tarfile.open(env.store.blobs.path(by_name(result)["app"])) as tar:
        assert sorted(tar.getnames()) == [
            "Procfile", "app.py", "requirements.txt", "runtime.txt", "worker.py"]
    assert env.in_cache("flask", "python/uv-cache")
    # The venv's files are uv's cached ones (hard links): the cache costs no second copy.
    flask_init = next(name for name in names if name.endswith("/site-packages/flask/__init__.py"))
    assert env.links_in_cache("flask", flask_init.removeprefix(".layers/")) >= 2
    # uv's virtualenv has no pip; pip's settings of this host reached uv all the same.
    assert not any("/site-packages/pip/" in name for name in names)


def test_pip_installer_opt_out_builds_with_pip_and_drops_uvs_cache(env: Env) -> None:
    env.build(env.app("flask-uv", "flask-hello"), "flask-switch")
    assert env.in_cache("flask-switch", "python/uv-cache")
    result, log = env.build(env.app("flask-pip", "flask-hello"), "flask-switch",
                            config_vars={"PAAS_PYTHON_INSTALLER": "pip"})
    text = "\n".join(log)
    assert "-----> Installing dependencies from requirements.txt with pip" in text
    assert "-----> Reusing virtualenv" not in text  # the installer is part of the layer's inputs
    with tarfile.open(env.store.blobs.path(by_name(result)["python/venv"])) as tar:
        names = tar.getnames()
    assert any("/site-packages/pip/" in name for name in names)
    assert any("/site-packages/flask/" in name for name in names)
    assert env.in_cache("flask-switch", "python/pip-cache")
    assert not env.in_cache("flask-switch", "python/uv-cache")

    with pytest.raises(BuildFailed, match="python failed: bin/build exited with status 1"):
        env.build(env.app("flask-what", "flask-hello"), "flask-what",
                  config_vars={"PAAS_PYTHON_INSTALLER": "poetry"})
    assert "PAAS_PYTHON_INSTALLER=poetry is not an installer" in "\n".join(env.logs["flask-what"])


def test_code_only_change_reuses_the_venv_layer(
    env: Env, flask_first: tuple[BuildResult, list[str]]
) -> None:
    first, _ = flask_first
    source = env.app("flask-2", "flask-hello")
    (source / "app.py").write_text((source / "app.py").read_text() + "\n# a code change\n")
    result, log = env.build(source, "flask", previous={layer.digest for layer in first.layers})
    old, new = by_name(first), by_name(result)
    assert new["python/venv"] == old["python/venv"]
    assert new["app"] != old["app"]
    assert [layer.reused for layer in result.layers] == [True, False]
    assert "-----> Reusing virtualenv" in log
    assert "Installing requirements" not in "\n".join(log)


def test_broken_requirements_fail_with_pips_error(env: Env) -> None:
    with pytest.raises(BuildFailed, match="python failed: bin/build exited with status 1"):
        env.build(env.app("broken", "broken-build"), "broken")
    text = "\n".join(env.logs["broken"])
    assert "paas-this-package-does-not-exist" in text
    assert "was not found in the package registry" in text
    assert "uv could not install the packages in requirements.txt" in text


def test_procfile_only_app_gets_just_the_app_layer(env: Env) -> None:
    result, log = env.build(env.app("static", "procfile-only"), "static")
    assert result.buildpacks == ["procfile"]
    assert [layer.name for layer in result.layers] == ["app"]
    assert result.process_types == {"web": "/usr/bin/python3 -m http.server $PORT"}
    assert result.env == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert "-----> Procfile declares types -> web" in log


def test_undetected_app_lists_what_buildpacks_look_for(env: Env) -> None:
    source = env.app("nothing")
    (source / "README").write_text("no code\n")
    looked_for = (
        r"python: a requirements.txt, pyproject.toml or Pipfile.lock; .*procfile: a Procfile"
    )
    with pytest.raises(BuildFailed, match=looked_for):
        env.build(source, "nothing")


@pytest.mark.parametrize("uri", ["../outside", "/etc", "./missing"])
def test_project_toml_uri_outside_or_missing_is_refused(env: Env, uri: str) -> None:
    source = env.app("escape-" + uri.strip("./"))
    (source / "project.toml").write_text(f'[[build.buildpacks]]\nuri = "{uri}"\n')
    with pytest.raises(BuildFailed, match=r"project\.toml: buildpack"):
        env.build(source, "escape")


def own_buildpack(source: Path, bp_id: str, build_script: str) -> None:
    """A CNB buildpack in the app (./bp, named by project.toml) that always detects."""
    bp = source / "bp"
    (bp / "bin").mkdir(parents=True)
    (bp / "buildpack.toml").write_text(f'api = "0.10"\n[buildpack]\nid = "{bp_id}"\n')
    (bp / "bin" / "detect").write_text("#!/usr/bin/env bash\nexit 0\n")
    (bp / "bin" / "build").write_text(build_script)
    for script in ("detect", "build"):
        (bp / "bin" / script).chmod(0o755)
    (source / "project.toml").write_text('[[build.buildpacks]]\nuri = "./bp"\n')


OWN_BUILD = """#!/usr/bin/env bash
# usage: bin/build <layers> <platform> <plan>
set -euo pipefail
layers="$1"
[[ -z "${SECRET:-}" ]] || { echo "config var leaked into the env"; exit 3; }
[[ "$(cat "$2/env/SECRET")" == "s3cret" ]] || { echo "no /platform/env/SECRET"; exit 4; }
mkdir -p "$layers/tool/bin" "$layers/tool/env.launch" "$layers/tool/env"
printf '%s' hello >"$layers/tool/env.launch/GREETING.default"
printf '%s' /extra >"$layers/tool/env/EXTRA_PATH.prepend"
printf '%s' : >"$layers/tool/env/EXTRA_PATH.delim"
printf '[types]\\nlaunch = true\\n' >"$layers/tool.toml"
printf '[[processes]]\\ntype = "web"\\ncommand = ["tool", "serve"]\\n' >"$layers/launch.toml"
echo "-----> own buildpack done"
"""


def test_own_buildpack_layers_env_and_processes(env: Env) -> None:
    source = env.app("own")
    own_buildpack(source, "acme/tool", OWN_BUILD)
    result, log = env.build(source, "own", config_vars={"SECRET": "s3cret"})
    assert "-----> own buildpack done" in log
    assert not any("s3cret" in line for line in log)
    assert result.buildpacks == ["acme/tool"]
    assert [layer.name for layer in result.layers] == ["acme_tool/tool", "app"]
    assert result.process_types == {"web": "tool serve"}
    assert result.env["PATH"].startswith("/app/.layers/acme_tool/tool/bin:")
    assert result.env["GREETING"] == "hello"
    assert result.env["EXTRA_PATH"] == "/extra"
    assert not env.in_cache("own", "acme_tool/tool")


def test_slow_build_waits_for_the_gate(env: Env) -> None:
    with BuildGate(env.settings.home) as gate:
        gate.open()
        result, log = env.build(
            env.app("slow", "slow-build"), "slow",
            config_vars={"PAAS_TEST_GATE_PORT": str(gate.port)})
    assert "-----> Waiting for the test" in log
    assert any(f"gate on port {gate.port} opened" in line for line in log)
    assert [layer.name for layer in result.layers] == ["test_slow/marker", "app"]


def test_stack_change_rebuilds_the_venv(
    env: Env, flask_first: tuple[BuildResult, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("paas.builder.buildpacks.stack_id", lambda: "upgraded-stack")
    result, log = env.build(env.app("flask-3", "flask-hello"), "flask")
    assert "-----> Creating virtualenv" in log and "-----> Reusing virtualenv" not in log
    # uv's virtualenvs are reproducible: the same packages make the same layer (the same digest)
    # again, which the store already holds.
    assert by_name(result)["python/venv"] == by_name(flask_first[0])["python/venv"]
    assert next(layer for layer in result.layers if layer.name == "python/venv").reused


def test_timeout_names_the_setting(env: Env) -> None:
    source = env.app("sleepy")
    own_buildpack(source, "sleepy", "#!/usr/bin/env bash\necho sleeping\nsleep 60\n")
    quick = Env(env.base, replace(env.settings, build_timeout=3), env.runtime, env.store)
    with pytest.raises(BuildFailed, match=r"build timed out after 3 s \(PAAS_BUILD_TIMEOUT\)"):
        quick.build(source, "sleepy")
    assert quick.logs["sleepy"] == ["-----> Building with buildpacks: sleepy 0.0.0", "sleeping"]


def test_a_buildpack_exiting_124_itself_is_not_called_a_timeout(env: Env) -> None:
    source = env.app("exits-124")
    # `timeout` exits 124, and a layer file whose types are not a table is ignored, not a crash
    own_buildpack(source, "quitter",
                  '#!/usr/bin/env bash\necho "types = 1" >"$1/odd.toml"\ntimeout 0.1 sleep 5\n')
    with pytest.raises(BuildFailed, match=r"^buildpack quitter failed: bin/build exited with "
                       r"status 124$"):
        env.build(source, "exits-124")


HOG_IN_A_PIPELINE = """#!/usr/bin/env bash
# As the built-in buildpacks run pip and npm: in a pipeline, the shell reporting the failure.
set -euo pipefail
echo "-----> Installing"
if ! /usr/bin/python3 -c 'chunks = [b"x" * (16 << 20) for _ in range(4096)]' 2>&1 \\
    | sed 's/^/       /'; then
  echo " !     the installer failed"
  exit 1
fi
"""


def test_oom_kill_inside_a_pipeline_names_the_memory_limit(env: Env) -> None:
    source = env.app("hog-pipeline")
    own_buildpack(source, "hog", HOG_IN_A_PIPELINE)
    small = Env(env.base, replace(env.settings, build_memory_mb=128), env.runtime, env.store)
    expected = (r"buildpack hog ran out of memory during build: the kernel killed a process at "
                r"the build memory limit, and bin/build exited with status 1: builds may use "
                r"128 MB \(PAAS_BUILD_MEMORY_MB\)")
    with pytest.raises(BuildFailed, match=expected):
        small.build(source, "hog")
    assert " !     the installer failed" in small.logs["hog-pipeline"]


def test_python_app_with_a_package_json_gets_node_first_for_its_assets(env: Env) -> None:
    source = env.app("assets")
    (source / "package.json").write_text(
        '{"name": "assets", "version": "1.0.0", "private": true,\n'
        ' "scripts": {"build": "node -e \\"require(\'fs\').writeFileSync(\'built.css\', '
        '\'body{}\')\\""}}\n')
    (source / "requirements.txt").write_text("# nothing to install\n")
    (source / "Procfile").write_text("web: python -m http.server $PORT\n")
    # No lock file: npm install (of nothing, so no registry is needed).
    result, log = env.build(source, "assets", config_vars={"NPM_CONFIG_OFFLINE": "true"})
    assert result.buildpacks == ["nodejs", "python"]
    assert "-----> Installing node_modules: npm install" in log
    assert log.index("-----> Running the build script: npm run build") < log.index(
        "-----> Python app detected")
    assert [layer.name for layer in result.layers] == ["nodejs/modules", "python/venv", "app"]
    with tarfile.open(env.store.blobs.path(by_name(result)["app"])) as tar:
        assert "built.css" in tar.getnames()
    assert result.process_types == {"web": "python -m http.server $PORT"}
