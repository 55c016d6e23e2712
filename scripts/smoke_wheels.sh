#!/usr/bin/env bash
# The built wheels work on their own: build every workspace member, install the wheels (not editable, not
# the workspace) into a fresh venv, run the installed scripts, and check what the wheels carry:
#   - `cordon --help`, `cordon demo`, `cordon-ca generate --config ...` from the venv's bin/
#   - each wheel's METADATA pins its sibling requirements to a range (`cordon-config<0.2,>=0.1`)
#   - each wheel ships its man pages as wheel data (share/man/man1/*.1)
#   - no wheel ships test support (cordon_testing, a `testing.py`/`testnet.py`, trustme in its requirements);
#     the test-support member packages/cordon-testing is not built
# Everything runs under a throwaway HOME / XDG_CONFIG_HOME; the demo only talks to 127.0.0.1.
# Third-party dependencies come from the package index as usual (SSL_CERT_FILE etc. are left as they are,
# so a TLS-intercepting mirror keeps working for uv).
#
# Usage: scripts/smoke_wheels.sh [--keep]     (--keep: leave the temporary directory and print its path)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0
[ "${1:-}" = "--keep" ] && keep=1

uv() { python3 -m uv "$@"; }
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cordon-smoke.XXXXXX")
if [ "$keep" = 1 ]; then
    trap 'echo "kept: $tmp"' EXIT
else
    trap 'rm -rf "$tmp"' EXIT
fi
start=$SECONDS

test_support=cordon-testing  # a dev dependency of every member, never shipped
members=(cordon)
for dir in packages/*/; do
    [ "$(basename "$dir")" = "$test_support" ] || members+=("$(basename "$dir")")
done
step "uv build (the product: ${members[*]})"
for member in "${members[@]}"; do
    uv build --package "$member" --no-create-gitignore -q -o "$tmp/dist" 2>&1 | grep -v '^Building' || true
done
ls "$tmp/dist"
for member in "${members[@]}"; do
    ls "$tmp/dist/${member//-/_}-"*.whl >/dev/null 2>&1 || fail "no wheel for $member"
done

step "sibling requirements carry version ranges (METADATA)"
for wheel in "$tmp/dist"/*.whl; do
    python3 - "$wheel" "${members[@]}" <<'PY'
import re, sys, zipfile
wheel, members = sys.argv[1], set(sys.argv[2:])
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    meta = zf.read(name).decode()
bad = []
for line in meta.splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    req = line[len("Requires-Dist: "):]
    dist = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
    if dist not in members:
        continue
    spec = req.split(";")[0]
    if not (re.search(r">=\s*\d", spec) and re.search(r"<\s*\d", spec)):
        bad.append(req)
    else:
        print(f"  {wheel.rsplit('/', 1)[-1].split('-')[0]}: {req}")
if bad:
    sys.exit(f"smoke: FAIL: {wheel}: sibling requirement without a >=,< range: {bad}")
PY
done

step "no test support in the product wheels"
for wheel in "$tmp/dist"/*.whl; do
    python3 - "$wheel" <<'PY'
import sys, zipfile
wheel = sys.argv[1]
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
shipped = [n for n in names if n.startswith("cordon_testing/") or n.rsplit("/", 1)[-1] in ("testing.py", "testnet.py")]
needs = [line for line in meta.splitlines() if line.startswith("Requires-Dist: ")
         and line.split()[1].split(";")[0].lower().startswith(("cordon-testing", "trustme"))]
if shipped or needs:
    sys.exit(f"smoke: FAIL: {wheel.rsplit('/', 1)[-1]} carries test support: {shipped + needs}")
print(f"  {wheel.rsplit('/', 1)[-1]}: {len(names)} files, no test support")
PY
done

step "man pages shipped as wheel data"
for member in "${members[@]}"; do
    wheel=$(ls "$tmp/dist/${member//-/_}-"*.whl)
    pages=$(python3 -c '
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(n for n in names if "/share/man/man1/" in n and n.endswith(".1")))' "$wheel")
    [ -n "$pages" ] || fail "$member: no share/man/man1/*.1 in $(basename "$wheel") (pyproject: [tool.uv.build-backend] data)"
    echo "  $member: $pages"
done

step "fresh venv with the built wheels (no editable install, no workspace)"
uv venv -q --python "$(python3 -c 'import sys; print(sys.executable)')" "$tmp/venv"
# the wheel files themselves, so no package index can supply a cordon distribution in their place
uv pip install -q --python "$tmp/venv/bin/python" --find-links "$tmp/dist" "$tmp/dist"/*.whl
bin="$tmp/venv/bin"
for script in cordon cordon-ca cordon-config cordon-proxy cordon-setup cordon-doctor cordon-pg; do
    [ -x "$bin/$script" ] || fail "script $script not installed"
done
[ -f "$tmp/venv/share/man/man1/cordon.1" ] || fail "share/man/man1/cordon.1 not installed in the venv"

# a throwaway home: nothing touches the real user's config, keyring or trust store
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/.config"
mkdir -p "$XDG_CONFIG_HOME" "$tmp/work"
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ALL_PROXY all_proxy
cd "$tmp/work"
# the installed code, not the work tree's
"$bin/python" -c 'import cordon, cordon_ca, sys; sys.exit(0 if sys.argv[1] not in cordon_ca.__file__ else 1)' "$root" \
    || fail "cordon_ca is imported from the work tree, not the venv"

step "cordon --help"
"$bin/cordon" --help >"$tmp/help.txt"
for cmd in setup route listener secret token start status ca trust doctor demo; do
    grep -q "^ *$cmd " "$tmp/help.txt" || fail "cordon --help does not list '$cmd'"
done
head -5 "$tmp/help.txt"

step "cordon demo"
timeout 120 "$bin/cordon" demo

step "cordon-ca generate --config $tmp/work/cordon.toml"
cat >"$tmp/work/cordon.toml" <<TOML
listen = 6790

[tls]
enabled = true
ca_cert_path = "$tmp/work/certs/ca-cert.pem"
ca_key_path = "$tmp/work/certs/ca-key.pem"
TOML
"$bin/cordon-ca" generate --config "$tmp/work/cordon.toml"
[ -f "$tmp/work/certs/ca-cert.pem" ] || fail "cordon-ca generate wrote no CA certificate"
mode=$(stat -c %a "$tmp/work/certs/ca-key.pem" 2>/dev/null || stat -f %Lp "$tmp/work/certs/ca-key.pem")
[ "$mode" = 600 ] || fail "CA key mode is $mode, not 600"
"$bin/cordon" ca show --config "$tmp/work/cordon.toml" >/dev/null

step "smoke run passed in $((SECONDS - start)) s"
