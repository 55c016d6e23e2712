from cordon_setup.edits.dotenv_file import parse_value, remove_values, set_values, values

ORIGINAL = """\
# my project env
export OPENAI_BASE=https://example.test  # inline comment
HTTPS_PROXY="http://corp:3128"
EMPTY=
"""


def test_parse_value_forms():
    assert parse_value("'a b'") == "a b"
    assert parse_value('"a \\"b\\" \\$x\\\\"') == 'a "b" $x\\'
    assert parse_value("plain  # comment") == "plain"
    assert parse_value("") == ""


def test_set_replaces_in_place_and_appends_after_marker_then_undo_is_exact():
    new, previous = set_values(
        ORIGINAL, {"HTTPS_PROXY": "http://127.0.0.1:1", "SSL_CERT_FILE": "/a b/c"}, marker="# m"
    )
    assert previous == {"HTTPS_PROXY": 'HTTPS_PROXY="http://corp:3128"', "SSL_CERT_FILE": None}
    assert new.splitlines()[2] == "HTTPS_PROXY='http://127.0.0.1:1'"
    assert new.endswith("# m\nSSL_CERT_FILE='/a b/c'\n")
    assert values(new)["OPENAI_BASE"] == "https://example.test"
    removal = remove_values(
        new,
        [("HTTPS_PROXY", "http://127.0.0.1:1", previous["HTTPS_PROXY"]), ("SSL_CERT_FILE", "/a b/c", None)],
        marker="# m",
    )
    assert removal.text == ORIGINAL and removal.left_alone == [] and removal.missing == []


def test_setting_the_same_value_again_changes_nothing():
    new, _ = set_values("", {"A": "1"}, marker="# m")
    again, previous = set_values(new, {"A": "1"}, marker="# m")
    assert again == new and previous == {"A": "A='1'"}


def test_value_changed_by_user_is_left_alone_and_marker_kept():
    new, _ = set_values("", {"A": "1", "B": "2"}, marker="# m")
    edited = new.replace("B='2'", "B=mine")
    removal = remove_values(edited, [("A", "1", None), ("B", "2", None)], marker="# m")
    assert removal.text == "# m\nB=mine\n" and removal.left_alone == ["B"]


def test_file_without_final_newline():
    new, _ = set_values("X=1", {"A": "1"})
    assert new == "X=1\nA='1'\n"
