import json
import shutil
import subprocess

import pytest
from cordon_setup.edits.dotenv_file import values
from cordon_setup.render import render_env

NASTY = {
    "SPACES": "/tmp/my dir/combined ca.pem",
    "QUOTES": 'it\'s "quoted"',
    "DOLLAR": "$HOME and `date` and $(id)",
    "BACKSLASH": "a\\b\\\\c",
    "PLAIN": "http://ns:tok-_x@127.0.0.1:6790",
}


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
def test_shell_format_round_trips_through_a_real_shell(shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    script = (
        render_env(NASTY, "shell")
        + 'for n in SPACES QUOTES DOLLAR BACKSLASH PLAIN; do eval "printf \'%s\\0\' \\"\\$$n\\""; done'
    )
    out = subprocess.run([shell, "-c", script], capture_output=True, text=True, check=True, timeout=10).stdout
    assert out.split("\0")[:-1] == list(NASTY.values())


def test_fish_format_quotes_backslash_and_quote():
    text = render_env({"A": "it's a\\b"}, "fish")
    assert text == "set -gx A 'it\\'s a\\\\b'\n"
    if shutil.which("fish"):
        out = subprocess.run(
            ["fish", "-c", text + "printf %s $A"], capture_output=True, text=True, timeout=10
        )
        assert out.stdout == "it's a\\b"


def test_dotenv_format_reads_back_unchanged():
    assert values(render_env(NASTY, "dotenv")) == NASTY


def test_json_format_is_one_object():
    assert json.loads(render_env(NASTY, "json")) == NASTY


def test_bad_name_or_format_is_refused():
    with pytest.raises(ValueError):
        render_env({"BAD NAME": "x"}, "shell")
    with pytest.raises(ValueError):
        render_env({"A": "x"}, "powershell")
