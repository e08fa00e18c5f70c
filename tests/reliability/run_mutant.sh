#!/usr/bin/env bash
# Mutation check of the soak: a deliberately broken build must make it fail.
#
#   tests/reliability/run_mutant.sh [PATCH] [-- SOAK ARGS...]
#
# Copies this tree (without .git, caches or the virtualenv) to a temporary directory, applies PATCH
# (default: mutants/ack_before_create.patch, a dispatcher that acks a task before creating its Job),
# and runs the reduced soak there with this tree's virtualenv. The soak's processes (dispatchers,
# watchers, emulator, stagers) run the copy's code: they start with the copy as working directory.
#
# Exit status: 0 when the soak FAILED on the mutant (the missed targets are printed) - the suite
# catches the bug; 1 when the soak passed (the mutant survived); 2 when the check could not run
# (patch does not apply, the soak could not start).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
patch_file="${1:-$here/mutants/ack_before_create.patch}"
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
soak_args=("$@")
[[ ${#soak_args[@]} -eq 0 ]] && soak_args=(--events "${BUCKETRUN_SOAK_EVENTS:-1000}" --services 5)
python="$root/.venv/bin/python"

work="$(mktemp -d -t bucketrun-mutant-XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tree"
tar -C "$root" --exclude=./.git --exclude=./.venv --exclude='*/__pycache__' --exclude=./.mypy_cache \
    --exclude=./.ruff_cache --exclude=./.pytest_cache --exclude=./.bucketrun-demo -cf - . \
    | tar -C "$work/tree" -xf -

if ! patch -d "$work/tree" -p1 --forward --batch < "$patch_file"; then
    echo "run_mutant: $patch_file does not apply to this tree" >&2
    exit 2
fi
echo "run_mutant: applied $(basename "$patch_file"); running the soak on the mutant: ${soak_args[*]}"

set +e
(cd "$work/tree" && PYTHONPATH="$work/tree" "$python" -m tests.reliability.soak "${soak_args[@]}" \
    --report "$work/report.json")
status=$?
set -e

case $status in
    1) echo "run_mutant: the soak FAILED on the mutant, as it must (targets missed are listed above)"; exit 0 ;;
    0) echo "run_mutant: the soak PASSED on the mutant: the suite does not catch this bug" >&2; exit 1 ;;
    *) echo "run_mutant: the soak could not run on the mutant (exit $status)" >&2; exit 2 ;;
esac
