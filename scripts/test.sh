#!/usr/bin/env bash
# The README's test command: set up .venv (CPU torch), build the real ComfyUI hosts the
# host tests drive (.host/, ignored), and run the whole suite on the CPU.
# With no arguments it runs eight steps: the suite in two processes side by side; the in-process
# host suites in five groups and the browser test, one process each;
# then the two-host tests (tests/test_host_versions.py), which start ComfyUI servers and a second
# in-process suite of their own. Each step is measured (tools/peak_rss.py): its time and the peak
# memory of its processes together are printed at the end, and a peak over
# UNIVG_TEST_MEMORY_LIMIT_GIB (12) fails the run; the per-file table of each pytest process is in
# .cache/suite_memory/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build_host.sh
bash scripts/build_browser.sh
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
SUMMARY=.cache/suite_memory/summary.txt
mkdir -p .cache/suite_memory
rm -f "$SUMMARY" .cache/suite_memory/*.json .cache/suite_memory/*.log
measured() {
    local label=$1
    shift
    UNIVG_SUITE_MEMORY=".cache/suite_memory/$label.json" .venv/bin/python -m tools.peak_rss --label "$label" \
        --limit-gib "${UNIVG_TEST_MEMORY_LIMIT_GIB:-12}" --summary "$SUMMARY" -- \
        .venv/bin/python -m pytest -p tools.suite_memory "$@"
}
# Two pytest processes at once, measured together (the memory of both at once): many tests are
# single-threaded (tiny models, Python), so two keep both cores busy
side_by_side() {  # first label, its pytest arguments as one string, second label, its arguments
    .venv/bin/python -m tools.peak_rss --label "$1 + $3" --limit-gib "${UNIVG_TEST_MEMORY_LIMIT_GIB:-12}" \
        --summary "$SUMMARY" -- bash scripts/side_by_side.sh "$@"
}
# The suite's second process: the tests of tiny models, the training runs and the Mini's small
# checks; the first has everything else, among them every test that loads the Mini's full-size
# towers for sampling, so that only one process at a time holds them
SUITE_SIDE=(tests/test_bgn_arms.py tests/test_training.py tests/test_kernels.py tests/test_low_precision.py
            tests/test_bench.py tests/test_checkpoint.py tests/test_operations_and_memory.py
            tests/test_mini_training.py tests/test_unet3d.py tests/test_pipelines.py tests/test_diffusion_math.py
            tests/test_bgn_sampling.py tests/test_keyframes.py tests/test_files.py tests/test_fidelity.py
            tests/test_guidance_surface.py tests/test_architecture.py tests/test_package.py tests/test_progress_watch.py
            tests/test_world.py tests/test_mini_vae.py tests/test_mini_preview.py tests/test_mini_install.py
            tests/test_mini_workflows.py tests/test_workflow_rates.py tests/test_evaluation_metrics.py
            tests/test_peak_rss.py)
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
for file in "${SUITE_SIDE[@]}"; do ignored+=("--ignore=$file"); done
status=0
side_by_side suite "${ignored[*]}" suite_side "${SUITE_SIDE[*]}" || status=$?
for group in "${HOST_GROUPS[@]}"; do
    # shellcheck disable=SC2086
    measured "${group%%:*}" ${group#*:} || status=$?
done
measured two_hosts tests/test_host_versions.py || status=$?
echo "== where the time and memory went (per test file)"
.venv/bin/python -m tools.suite_memory report .cache/suite_memory/*.json --slowest 5 || true
echo "== each step (time, peak memory of its processes together and of the largest)"
cat "$SUMMARY"
exit "$status"
