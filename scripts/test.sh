#!/usr/bin/env bash
# The README's test command: set up .venv (CPU torch), build the real ComfyUI hosts the
# host tests drive (.host/, ignored), and run the whole suite on the CPU.
# With no arguments it runs in eight processes: the suite, the in-process host suites in five
# groups, the browser test, then the two-host tests (tests/test_host_versions.py), which start ComfyUI servers and
# a second in-process suite of their own. Each process is measured (tools/peak_rss.py): its time and the peak memory of
# its largest process are printed at the end, and a peak over UNIVG_TEST_MEMORY_LIMIT_GIB
# (12) fails the run; the per-file table of each is in .cache/suite_memory/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_host.sh
bash scripts/build_browser.sh
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
SUMMARY=.cache/suite_memory/summary.txt
mkdir -p .cache/suite_memory
rm -f "$SUMMARY" .cache/suite_memory/*.json
measured() {
    local label=$1
    shift
    UNIVG_SUITE_MEMORY=".cache/suite_memory/$label.json" .venv/bin/python -m tools.peak_rss --label "$label" \
        --limit-gib "${UNIVG_TEST_MEMORY_LIMIT_GIB:-12}" --summary "$SUMMARY" -- \
        .venv/bin/python -m pytest -p tools.suite_memory "$@"
}
# the in-process host suites in processes of their own: full-size towers (GB each) loaded by one
# module are then never under the next module's
ENCODERS_TEST=test_training_encoders_match_comfyuis
HOST_GROUPS=(
    "host_nodes:tests/test_host.py tests/test_host_core_sampling.py tests/test_host_fidelity.py"
    "host_keyframes:tests/test_host_keyframes.py"
    "host_mini:tests/test_host_mini.py tests/test_host_server.py"
    "browser:tests/test_host_browser.py"
    "host_training:tests/test_host_training.py --deselect tests/test_host_training.py::$ENCODERS_TEST"
    "host_encoders:tests/test_host_training.py::$ENCODERS_TEST"
)
ignored=(--ignore=tests/test_host_versions.py)
for group in "${HOST_GROUPS[@]}"; do
    for word in ${group#*:}; do
        if [[ $word == *.py ]]; then ignored+=("--ignore=$word"); fi
    done
done
status=0
measured suite "${ignored[@]}" || status=$?
for group in "${HOST_GROUPS[@]}"; do
    # shellcheck disable=SC2086
    measured "${group%%:*}" ${group#*:} || status=$?
done
measured two_hosts tests/test_host_versions.py || status=$?
echo "== where the time and memory went (per test file)"
.venv/bin/python -m tools.suite_memory report .cache/suite_memory/*.json --slowest 5 || true
echo "== each pytest process (time, peak memory of its largest process)"
cat "$SUMMARY"
exit "$status"
