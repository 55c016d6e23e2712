import pytest
from cordon_setup.edits.toml_file import TomlEditError, remove_values, set_values, tail_of, values

TABLE = ("shell_environment_policy", "set")
ENV = {"HTTPS_PROXY": "http://ns:t@127.0.0.1:6790", "SSL_CERT_FILE": "/x y/'q\"$z.pem"}

CASES = {
    "empty": "",
    "comments": '# my codex config\nmodel = "o3"  # best one\n\n[profiles.fast]\nmodel = "gpt-5"\n',
    "existing-policy": 'model = "o3"\n\n[shell_environment_policy]\ninherit = "core"  # keep\n',
    "existing-set": 'a = 1\n[shell_environment_policy.set]\nFOO = "bar"\n# keep me\nHTTPS_PROXY = "http://corp:3128"\n',
    "no-final-newline": 'model="x"',
    "inline-table": '[shell_environment_policy]\nset = { FOO = "bar" }  # c\n',
    "dotted-keys": 'shell_environment_policy.set.FOO = "x"\nmodel = 1\n',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_set_then_remove_gives_back_the_original_bytes(name):
    original = CASES[name]
    new, previous, created = set_values(original, TABLE, ENV)
    assert values(new, TABLE) | ENV == values(new, TABLE)
    for line in original.splitlines():
        if "HTTPS_PROXY" not in line and name != "inline-table":
            assert line in new  # comments and other keys kept verbatim
    entries = [(k, v, previous[k]) for k, v in ENV.items()]
    back, left, missing = remove_values(new, TABLE, entries, created, tail=tail_of(original))
    assert back == original and left == [] and missing == []


def test_user_change_is_left_alone():
    new, previous, created = set_values("", TABLE, ENV)
    edited = new.replace("127.0.0.1:6790", "127.0.0.1:9999")
    back, left, _ = remove_values(
        edited, TABLE, [(k, v, previous[k]) for k, v in ENV.items()], created, tail=""
    )
    assert left == ["HTTPS_PROXY"] and "9999" in back and "SSL_CERT_FILE" not in back


def test_invalid_toml_and_non_table_are_clear_errors():
    with pytest.raises(TomlEditError, match="not valid TOML"):
        set_values("a = = 1", TABLE, ENV, where="/x/config.toml")
    with pytest.raises(TomlEditError, match="not a table"):
        set_values("shell_environment_policy = 1\n", TABLE, ENV)
