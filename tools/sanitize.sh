#!/usr/bin/env bash
# Build fastbp's kernels with AddressSanitizer + UndefinedBehaviorSanitizer
# into a throwaway virtual environment and run the kernel-facing tests there.
#
#   tools/sanitize.sh                 # the default test selection
#   tools/sanitize.sh -k "not sigkill"   # extra arguments go to pytest
#
# Exits non-zero if any sanitizer report appears (even one that pytest
# itself survived) or if the tests fail. Development only: not part of CI.
# Needs gcc (for libasan/libubsan) and network access for pip.
set -euo pipefail
cd "$(dirname "$0")/.."

work="${FASTBP_SANITIZE_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/fastbp-sanitize.XXXXXX")}"
log="$work/pytest.log"
echo "sanitize: working in $work"

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q scikit-build-core cython cython-cmake scipy numpy ninja cmake
# -Cinstall.strip=false keeps the debug information for readable reports;
# its own build directory keeps it apart from the normal and editable builds.
python -m pip install -q --no-build-isolation \
    -Ccmake.define.FASTBP_SANITIZE=ON \
    -Cinstall.strip=false \
    -Cbuild-dir=build/sanitize \
    ".[test]"

# (found without importing it: that needs the ASan runtime preloaded)
kernels=$(python -c "import glob, sysconfig
print(*glob.glob(sysconfig.get_paths()['platlib'] + '/fastbp/_kernels*.so'))")
if ! readelf -d "$kernels" | grep -q 'libasan'; then
    echo "sanitize: $kernels is not linked against libasan" >&2
    exit 2
fi
echo "sanitize: testing $kernels"

asan_runtime=$(gcc -print-file-name=libasan.so)
if [ ! -e "$asan_runtime" ]; then
    echo "sanitize: gcc has no libasan.so ($asan_runtime)" >&2
    exit 2
fi

tests=(tests/test_kernels.py tests/test_properties.py tests/test_hostile_input.py tests/test_threads.py
       tests/test_interrupts.py tests/test_resources.py tests/test_divergence.py
       tests/test_determinism.py tests/test_files.py)
# ASan holds freed blocks in its quarantine (256 MB by default) instead of
# reusing them, so resident memory grows under it by design; that test runs
# in the normal suite (the tracemalloc tests, which ASan leaves alone, run here).
deselect=(--deselect
    tests/test_resources.py::test_resident_memory_stays_flat_over_200_calls_of_every_entry_point)

# The interpreter is not instrumented, so the ASan runtime is preloaded; it
# reaches the child interpreters that some tests start, too. Reports go to
# files $work/report.<pid> (pytest would swallow them with the output of a
# test that aborts; hence also --capture=sys, which leaves UBSan's stderr
# alone). Python's own allocations are never freed at exit: leak
# detection would only report those. A refused huge allocation returns NULL
# (MemoryError), as with the normal allocator, instead of aborting.
rm -f "$work"/report.*
set +e
LD_PRELOAD="$asan_runtime" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$work/report" \
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    python -m pytest -p no:cacheprovider --capture=sys -q "${deselect[@]}" "${tests[@]}" "$@" \
    2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# ASan writes its reports to the report files (the warnings about refused
# huge allocations too, which are not errors); UBSan writes to stderr, which
# is in the log, or for a child process in the failing test's message.
pattern='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer'
echo
found=$(cat "$log" "$work"/report.* 2>/dev/null | grep -cE "$pattern" || true)
if [ "$found" -ne 0 ]; then
    grep -hE -A3 "$pattern" "$log" "$work"/report.* 2>/dev/null | head -60 >&2 || true
    echo "sanitize: FAILED: $found sanitizer report line(s); see $log and $work/report.*" >&2
    exit 3
fi
echo "sanitize: no AddressSanitizer or UBSan report"
if [ "$status" -ne 0 ]; then
    echo "sanitize: pytest exited with $status (test failures, no sanitizer report)" >&2
    exit "$status"
fi
echo "sanitize: passed; log in $log"
