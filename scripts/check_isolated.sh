#!/usr/bin/env bash
# Each workspace member installs and passes its own tests ALONE: for every member X, a throwaway environment
# holding only X, its dependencies and its dev group (`uv run --isolated --package X`), then X's tests.
# A member that imports a sibling it does not declare, or a test that leans on another member's dev
# dependency, fails here and nowhere else.
#
# Usage: scripts/check_isolated.sh [MEMBER...]     (default: every packages/*/ directory)
# Exit 0 when every member passed; prints one summary line per member with its time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

uv() { python3 -m uv "$@"; }

if [ "$#" -gt 0 ]; then
    members=("$@")
else
    members=()
    for dir in packages/*/; do members+=("$(basename "$dir")"); done
fi

failed=()
summary=()
total_start=$SECONDS
for member in "${members[@]}"; do
    printf '\n==> %s (isolated)\n' "$member"
    start=$SECONDS
    if uv run --locked --isolated --package "$member" \
        python -m pytest "packages/$member" -q -p no:cacheprovider; then
        summary+=("pass  $member  $((SECONDS - start)) s")
    else
        summary+=("FAIL  $member  $((SECONDS - start)) s")
        failed+=("$member")
    fi
done

printf '\n==> isolated member runs (%d s in all)\n' "$((SECONDS - total_start))"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
