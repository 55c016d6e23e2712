"""Installs what the benchmark needs when missing: Debian packages, and each peer in its own throwaway venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

APT_PACKAGES = {"nginx": "nginx", "hey": "hey", "hyperfine": "hyperfine", "curl": "curl"}
# Pinned so that a rerun measures the same peers; each goes into its own venv under bench/.work/.
PEER_PACKAGES = {
    "mitmproxy": ["mitmproxy==11.0.2"],
    "proxypy": ["proxy.py==2.4.10"],
    "tools": ["py-spy>=0.4,<0.5"],
}


class ToolMissing(RuntimeError):
    """A tool the benchmark needs is absent and could not be installed."""


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in /usr/sbin (nginx lives there, often not on a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def ensure_apt(names: list[str], log) -> dict[str, str]:
    """Paths of the given commands, installing the missing ones with apt-get when running as root."""
    missing = [n for n in names if which(n) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ToolMissing(f"missing {', '.join(missing)}: install them (Debian: apt-get install "
                              f"{' '.join(APT_PACKAGES[n] for n in missing)})")
        log(f"installing {', '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        pkgs = [APT_PACKAGES[n] for n in missing]
        proc = subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], env=env, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], env=env, capture_output=True,
                           timeout=600)
    found = {n: which(n) for n in names}
    still = [n for n, p in found.items() if p is None]
    if still:
        raise ToolMissing(f"could not install {', '.join(still)}")
    return {n: p for n, p in found.items() if p}


def _uv() -> list[str]:
    env_uv = os.environ.get("UV")
    if env_uv and Path(env_uv).exists():
        return [env_uv]
    found = shutil.which("uv")
    if found:
        return [found]
    return ["python3", "-m", "uv"]


def ensure_venv(work: Path, name: str, log) -> Path:
    """The python of ``work/<name>-venv`` with PEER_PACKAGES[name] installed (created when missing).

    SSL_CERT_FILE / pip settings are inherited from the environment, so a TLS-intercepting package
    mirror keeps working.
    """
    venv = work / f"{name}-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-installed"
    wanted = " ".join(PEER_PACKAGES[name])
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    log(f"installing {wanted} into {venv.relative_to(work.parent)}")
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # The venv must not inherit the workspace: a plain interpreter, our pinned packages only.
    base = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    subprocess.run([*_uv(), "venv", "-q", "--clear", "--python", base, str(venv)], env=env, check=True,
                   timeout=300)
    subprocess.run([*_uv(), "pip", "install", "-q", "--python", str(python), *PEER_PACKAGES[name]],
                   env=env, check=True, timeout=600)
    stamp.write_text(wanted)
    return python


def command_version(argv: list[str]) -> str:
    """First line of a tool's version output, or ``?``."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def compile_bytecode(pythons: list[Path], extra_dirs: list[Path], log) -> None:
    """Write ``.pyc`` files for every module each interpreter's site-packages holds (and ``extra_dirs``).

    ``pip install`` does this by default; ``uv`` does not, and with ``PYTHONDONTWRITEBYTECODE=1`` (set on this
    machine) nothing ever caches them, so every start would compile its modules: that would measure the
    install method, not the proxy or the CLI. Every target gets the same treatment.
    """
    log("compiling bytecode of every venv (as `pip install` does)")
    for python in pythons:
        code = "import site, sys; print('\\n'.join(site.getsitepackages()))"
        dirs = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30).stdout.split()
        targets = [d for d in dirs if Path(d).is_dir()]
        if python == Path(sys.executable):
            targets += [str(d) for d in extra_dirs if d.is_dir()]
        subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", *targets], capture_output=True,
                       timeout=600)

