"""Every parser of user input, fuzzed: whatever a user sends, the answer is the parsed value
or the project's own error with a message, never a crash (a 500, a failed build with a
traceback)."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from paas import appjson, apps, certs, config_vars, domains
from paas.builder import classic, cnb
from paas.builder.procfile import parse_procfile
from paas.errors import Invalid

# Hypothesis's caches go to a directory of this module's own, not into the checkout.
HYPOTHESIS_HOME = Path(tempfile.mkdtemp(prefix="paas-hypothesis-"))
set_hypothesis_home_dir(HYPOTHESIS_HOME)


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_home() -> Iterator[None]:
    yield
    shutil.rmtree(HYPOTHESIS_HOME, ignore_errors=True)


# Any code point, lone surrogates too: a JSON body may carry "\ud800".
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=200)
LINES = st.lists(st.one_of(ANY_TEXT, st.sampled_from(
    ["web: run", "worker:", ": x", "web:web", "#", "  ", "release: ./x", "a" * 70 + ": y",
     "web: a", "WEB : b", "\x00: c", "web:\tx"])), max_size=12).map("\n".join)
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def refused_clearly(call: Callable[[], Any], *errors: type[Exception]) -> Any:
    """Runs `call`: a result, or one of `errors` with a message."""
    try:
        return call()
    except (Invalid, *errors) as error:
        message = getattr(error, "message", None) or str(error)
        assert message.strip(), f"{type(error).__name__} without a message"
        return None


@FUZZ
@given(LINES.map(lambda t: t.encode(errors="surrogatepass").decode(errors="replace")))
def test_procfile(text: str) -> None:
    """As the build reads a Procfile: any bytes, decoded with errors="replace"."""
    parsed = refused_clearly(lambda: parse_procfile(text))
    if parsed is not None:
        assert all(name and command for name, command in parsed.items())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20)
APP_JSON = st.fixed_dictionaries({}, optional={
    "formation": st.dictionaries(st.sampled_from(["web", "worker", "", "x y"]), JSON_VALUES
                                 | st.fixed_dictionaries({}, optional={
                                     "quantity": JSON_VALUES, "size": JSON_VALUES}), max_size=3),
    "scripts": st.dictionaries(st.sampled_from(["dokku", "postdeploy", "predeploy"]),
                               JSON_VALUES, max_size=3) | JSON_VALUES,
    "healthchecks": st.dictionaries(st.sampled_from(["web", "worker"]), st.lists(
        st.fixed_dictionaries({}, optional={k: JSON_VALUES for k in (
            "type", "path", "content", "initialDelay", "wait", "timeout", "attempts")}),
        max_size=3) | JSON_VALUES, max_size=2) | JSON_VALUES,
})


@FUZZ
@given(st.one_of(ANY_TEXT, APP_JSON.map(json.dumps), JSON_VALUES.map(json.dumps)))
def test_app_json(text: str) -> None:
    refused_clearly(lambda: appjson.parse(text, {"standard-1x", "standard-2x"}))


def _in_app_dir(files: dict[str, str], work: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        app_dir = Path(tmp) / "app"
        (app_dir / "bp" / "bin").mkdir(parents=True)
        for name, content in files.items():
            (app_dir / name).write_bytes(content.encode(errors="surrogatepass"))
        return work(app_dir)


NO_URL = ANY_TEXT.filter(lambda t: "://" not in t)  # a URL is cloned over the network


@FUZZ
@given(st.lists(st.one_of(NO_URL, st.sampled_from(["./bp", "bp", "../x", "/etc", ".", "#"])),
                max_size=5).map("\n".join))
def test_dot_buildpacks(text: str) -> None:
    def choose(app_dir: Path) -> Any:
        return classic.chosen(app_dir, {}, app_dir.parent / "work", lambda _line: None)

    refused_clearly(lambda: _in_app_dir({".buildpacks": text}, choose), cnb.BuildpackError)


@FUZZ
@given(NO_URL)
def test_buildpack_url_config_var(url: str) -> None:
    def choose(app_dir: Path) -> Any:
        return classic.chosen(app_dir, {"BUILDPACK_URL": url}, app_dir.parent / "work",
                              lambda _line: None)

    refused_clearly(lambda: _in_app_dir({}, choose), cnb.BuildpackError)


TOML_VALUE = st.one_of(
    st.integers().map(str), st.booleans().map(lambda b: str(b).lower()),
    ANY_TEXT.map(json.dumps), st.sampled_from(['"./bp"', '"bp"', '"../x"', '"/etc"', "[]",
                                               "{}", '"heroku/python"', '[{uri = "./bp"}]']))
PROJECT_TOML = st.one_of(
    ANY_TEXT,
    st.lists(st.tuples(st.sampled_from(["[[build.buildpacks]]", "[build]", "[[build]]", ""]),
                       st.sampled_from(["uri", "id", "buildpacks", "build", "version"]),
                       TOML_VALUE), max_size=4)
    .map(lambda parts: "\n".join(f"{table}\n{key} = {value}" for table, key, value in parts)),
)


@FUZZ
@given(PROJECT_TOML)
def test_project_toml(text: str) -> None:
    refused_clearly(lambda: _in_app_dir({"project.toml": text}, cnb.project_buildpacks),
                    cnb.BuildpackError)


@FUZZ
@given(st.dictionaries(ANY_TEXT, st.none() | ANY_TEXT | st.just("x" * 40000), max_size=4))
def test_config_vars(changes: dict[str, str | None]) -> None:
    refused_clearly(lambda: config_vars.validate(changes))


@FUZZ
@given(st.one_of(ANY_TEXT, st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)))
def test_app_names(name: str) -> None:
    accepted = refused_clearly(lambda: apps.validate_name(name))
    if accepted is not None:
        assert accepted == name and len(name) <= 30


@FUZZ
@given(st.one_of(ANY_TEXT, st.from_regex(r"(\*\.)?([a-z0-9-]{1,70}\.){1,4}[a-z0-9]{1,10}\.?",
                                         fullmatch=True)))
def test_domain_names(hostname: str) -> None:
    refused_clearly(lambda: domains.normalize(hostname, "paas.example.test"))


def _pem(kind: str, body: bytes) -> str:
    lines = base64.b64encode(body).decode()
    wrapped = "\n".join(lines[i:i + 64] for i in range(0, len(lines), 64))
    return f"-----BEGIN {kind}-----\n{wrapped}\n-----END {kind}-----\n"


PEMS = st.one_of(ANY_TEXT, st.binary(max_size=600).map(lambda b: _pem("CERTIFICATE", b)),
                 st.binary(max_size=600).map(lambda b: _pem("PRIVATE KEY", b)))


@FUZZ
@given(PEMS, PEMS)
def test_certificates(cert: str, key: str) -> None:
    refused_clearly(lambda: certs.parse(cert, key))


@pytest.mark.parametrize("value", ["\ud800", "ok\udfff"])
def test_a_config_value_with_a_lone_surrogate_is_refused_clearly(value: str) -> None:
    with pytest.raises(Invalid, match="not valid Unicode"):
        config_vars.validate({"KEY": value})
