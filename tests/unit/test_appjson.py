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
