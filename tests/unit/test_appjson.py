"""app.json as the platform reads it: defaults filled in, bad input refused with what to fix."""

from __future__ import annotations

import json

import pytest

from paas.appjson import parse
from paas.errors import Invalid

SIZES = {"eco", "basic", "standard"}


def test_defaults_are_filled_in_and_a_single_check_becomes_a_list() -> None:
    manifest = parse(json.dumps({"formation": {"web": {"quantity": 2}},
                                 "healthchecks": {"web": {"path": "/up"}},
                                 "scripts": {"dokku": {"predeploy": "make migrate"}}}), SIZES)
    assert manifest["formation"] == {"web": {"quantity": 2, "size": "basic"}}
    assert manifest["scripts"] == {"predeploy": "make migrate"}
    assert manifest["healthchecks"]["web"] == [{"path": "/up", "content": "", "initialDelay": 0,
                                                "wait": 5, "timeout": 5, "attempts": 3,
                                                "type": "startup"}]


@pytest.mark.parametrize(("document", "message"), [
    ("[1]", "must hold a JSON object"),
    ("{", "not valid JSON"),
    ('{"formation": {"web": {"size": "huge"}}}', "is not one of: basic, eco, standard"),
    ('{"formation": {"web": {"quantity": -1}}}', "quantity must be 0 to 100"),
    ('{"healthchecks": {"web": [{"path": "health"}]}}', "path must start with /"),
    ('{"healthchecks": {"web": [{"attempts": "3"}]}}', "attempts must be a number"),
    ('{"scripts": {"dokku": {"postdeploy": 7}}}', "postdeploy must be a command line"),
])
def test_bad_documents_are_refused_with_what_to_fix(document: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse(document, SIZES)


def test_text_that_was_never_utf8_is_refused_clearly() -> None:
    with pytest.raises(Invalid, match="not UTF-8"):
        parse('{"name": "\udcff"}', SIZES)


DOKKU_APP_JSON = """{
  // Dokku reads app.json as JSON with comments
  "formation": {
    /* one web dyno, two workers */
    "web": {"quantity": 1},
    "worker": {"quantity": 2, "size": "standard",},
  },
  "healthchecks": {
    "web": [
      // the first check
      {"path": "/health", "content": "ok // not a comment"},
      {"path": "/ready"}, // a trailing comma in an array
    ],
  },
  "scripts": {"dokku": {"postdeploy": "echo http://example.com/*"}},
}
"""


def test_comments_and_trailing_commas_are_read_as_dokku_reads_them() -> None:
    manifest = parse(DOKKU_APP_JSON, SIZES)
    assert manifest["formation"] == {"web": {"quantity": 1, "size": "basic"},
                                     "worker": {"quantity": 2, "size": "standard"}}
    checks = manifest["healthchecks"]["web"]
    assert [c["path"] for c in checks] == ["/health", "/ready"]
    assert checks[0]["content"] == "ok // not a comment"
    assert manifest["scripts"] == {"postdeploy": "echo http://example.com/*"}


@pytest.mark.parametrize(("document", "where"), [
    ('{\n  "formation": {\n    "web": {"quantity": 1}\n    "worker": {}\n  }\n}',
     "line 4, column 5: unexpected"),
    ('{\n  // a comment\n  "scripts": tru\n}', "line 3, column 17: unexpected end of line"),
    ('{"formation": {}', "line 1, column 17: unexpected end of input"),
    ('{"formation": {}} extra', "line 1, column 19: unexpected"),
])
def test_a_bad_document_is_refused_with_its_line_and_column(document: str,
                                                            where: str) -> None:
    with pytest.raises(Invalid, match=r"app\.json is not valid JSON") as caught:
        parse(document, SIZES)
    assert where in str(caught.value)


@pytest.mark.parametrize(("document", "message"), [
    ('{"formation": {"web": {"quantity": NaN}}}', "NaN is not a JSON number"),
    ('{"formation": {"web": {"quantity": Infinity}}}', "Infinity is not a JSON number"),
    ("[" * 20000, "nested too deeply"),
])
def test_what_json_has_not_is_refused(document: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse(document, SIZES)


def test_cron_jobs_are_read_as_dokku_reads_them() -> None:
    manifest = parse(json.dumps({
        "TZ": "Europe/Paris",
        "cron": [{"command": "python task.py", "schedule": "@daily"},
                 {"command": "make report", "schedule": "*/5 * * * *", "TZ": "UTC"}]}), SIZES)
    assert manifest["cron"] == [
        {"command": "python task.py", "schedule": "@daily", "tz": "Europe/Paris"},
        {"command": "make report", "schedule": "*/5 * * * *", "tz": "UTC"}]
    assert parse("{}", SIZES)["cron"] == []


@pytest.mark.parametrize(("cron", "message"), [
    ([{"command": "python task.py", "schedule": "61 * * * *"}],
     "app.json cron[0] ('python task.py'): schedule '61 * * * *' (TZ UTC) cannot run: "
     "its minute field '61' is out of range"),
    ([{"command": "x", "schedule": "* * *"}], "schedule '* * *' (TZ UTC) cannot run: a "
                                              "schedule has 5 fields"),
    ([{"command": "x", "schedule": "@daily", "TZ": "Nowhere/Town"}],
     "'Nowhere/Town' is not a time zone"),
    ([{"schedule": "@daily"}], "cron[0]: command must be a command line"),
    ({"command": "x"}, '"cron" must be a list'),
    ([{"command": "x", "schedule": 5}], "schedule must be a string"),
])
def test_a_bad_cron_job_is_refused_with_the_job_the_expression_and_why(
        cron: object, message: str) -> None:
    with pytest.raises(Invalid) as refused:
        parse(json.dumps({"cron": cron}), SIZES)
    assert message in refused.value.message
