#!/usr/bin/env bash
# One step of scripts/test.sh: two pytest processes at once, each writing its log and its
# per-test table (.cache/suite_memory/LABEL.json); the logs are printed when both have ended,
# and the step fails when either does.
# Usage: side_by_side.sh FIRST_LABEL "FIRST_PYTEST_ARGS" SECOND_LABEL "SECOND_PYTEST_ARGS"
set -uo pipefail
cd "$(dirname "$0")/.."
logs=.cache/suite_memory
# OpenMP threads that spin while they wait take the core from the other process's threads:
# with two processes of two threads on two cores, spinning made the suite slower than one process
export OMP_WAIT_POLICY=PASSIVE
run() {  # label, its arguments as one string, then pytest's extra options
    local label=$1
    local -a arguments
    read -r -a arguments <<< "$2"
    shift 2
    UNIVG_SUITE_MEMORY="$logs/$label.json" .venv/bin/python -m pytest -p tools.suite_memory "$@" "${arguments[@]}" \
        > "$logs/$label.log" 2>&1
}
run "$1" "$2" &
first=$!
run "$3" "$4" -p no:cacheprovider &  # two processes would write .pytest_cache at once
second=$!
wait "$first"
first_status=$?
wait "$second"
second_status=$?
for label in "$1" "$3"; do
    echo "== $label"
    cat "$logs/$label.log"
done
if [ "$first_status" -ne 0 ]; then exit "$first_status"; fi
exit "$second_status"
