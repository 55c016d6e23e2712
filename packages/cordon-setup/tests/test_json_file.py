import json

import pytest
from cordon_setup.edits.json_file import JsonEditError, JsonStyle, drop_if_empty, dump, ensure_object, load


def test_style_is_detected_and_kept():
    text = '{\n\t"b": 1,\n\t"a": {"x": [1, 2]}\n}'
    data, style = load(text, where="f")
    assert style == JsonStyle("\t", False) and list(data) == ["b", "a"]
    assert dump(data, style) == json.dumps(json.loads(text), indent="\t")


def test_like_json_stringify_with_two_spaces():
    text = '{\n  "permissions": {\n    "allow": [\n      "Bash(ls:*)"\n    ],\n    "deny": []\n  },\n  "model": "opus ü"\n}\n'
    data, style = load(text, where="f")
    assert dump(data, style) == text


def test_created_containers_are_dropped_when_empty():
    data, _ = load("{}", where="f")
    _obj, created = ensure_object(data, ["hooks", "X"], where="f")
    assert created == [["hooks"], ["hooks", "X"]]
    drop_if_empty(data, created)
    assert data == {}


def test_errors():
    with pytest.raises(JsonEditError, match="line 1"):
        load("{,}", where="s.json")
    with pytest.raises(JsonEditError, match="object"):
        load("[]", where="s.json")
    with pytest.raises(JsonEditError, match="must be a JSON object"):
        ensure_object({"env": []}, ["env"], where="s.json")
