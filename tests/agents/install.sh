#!/usr/bin/env bash
# Install the pinned agent CLIs that tests/agents drives, into one place the tests find:
# tests/agents/clients (or $CORDON_AGENT_CLIENTS). npm: the exact tree of clients/package-lock.json;
# PyPI: one venv per client from clients/<name>.txt (every version pinned, resolved with uv pip compile).
# Packages come from the registries only. No agent code runs on the host network: npm installs with
# --ignore-scripts, and the packages' install scripts (which put the native binaries of Claude Code and
# OpenCode in place) then run inside a private network namespace with only loopback up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${CORDON_AGENT_CLIENTS:-$here/clients}
mkdir -p "$dest"
if [ "$dest" != "$here/clients" ]; then
    cp "$here/clients/package.json" "$here/clients/package-lock.json" "$dest/"
fi

start=$(date +%s)
if command -v npm >/dev/null; then
    # npm install, not npm ci: the registry mirror lacks the other platforms' optional binary packages, which
    # npm ci insists on finding in the lock file; the lock still fixes every version installed
    npm install --prefix "$dest" --ignore-scripts --no-save --no-audit --no-fund --loglevel=error
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
        unshare -n -- sh -c 'ip link set lo up 2>/dev/null; npm rebuild --prefix "$1" --no-audit --no-fund --silent' \
            sh "$dest"
    else
        echo "warning: cannot make a private network namespace (needs root and unshare): the npm clients'" \
             "install scripts were not run, so Claude Code and OpenCode have no binary and their tests skip"
    fi
else
    echo "warning: npm is not installed: the Codex, Claude Code, Gemini CLI, OpenCode and OpenClaw tests skip"
fi
echo "npm clients: $(( $(date +%s) - start )) s"

start=$(date +%s)
for name in hermes aider; do
    python3 -m uv venv -q --allow-existing --python 3.11 "$dest/venv-$name"
    python3 -m uv pip sync -q --python "$dest/venv-$name/bin/python" "$here/clients/$name.txt"
done
echo "PyPI clients: $(( $(date +%s) - start )) s"
