#!/usr/bin/env bash
# Run the float-comparing tests on several CPU code paths of this machine and tabulate the
# largest difference each comparison saw (tests/TOLERANCES.md is this script's output).
#   bash tests/code_paths.sh OUTDIR [NAME ...]     (NAMEs: run only those code paths)
# Code paths: ATen's vector kernels as detected, ATen's portable kernels (ATEN_CPU_CAPABILITY=default),
# AVX2 forced on an AVX-512 CPU, oneDNN and MKL capped at SSE4.1/SSE4.2, and 2 torch threads. Each run uses a fresh
# inductor cache: torch reuses compiled kernels across ATEN_CPU_CAPABILITY values.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash tests/code_paths.sh OUTDIR}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
tests=(tests/test_optimizers.py tests/test_training.py tests/test_architectures.py tests/test_landscape.py)
status=0
only=("${@:2}")
run() {
    local name="$1"; shift
    if [ "${#only[@]}" -gt 0 ] && [[ " ${only[*]} " != *" $name "* ]]; then return; fi
    local cache; cache="$(mktemp -d)"
    rm -f "$out/$name.tsv"
    echo "== $name: $*"
    env "$@" TORCHINDUCTOR_CACHE_DIR="$cache" THREEREGIME_TOLERANCE_LOG="$out/$name.tsv" \
        python -m pytest -q -m "not slow" -p no:cacheprovider "${tests[@]}" 2>&1 | tail -n 3 | tee "$out/$name.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    rm -rf "$cache"
}
run native THREEREGIME_TEST_THREADS=1
run aten-default ATEN_CPU_CAPABILITY=default
# native is ATen's best path here (avx512 where the CPU has it, else avx2): force avx2 only where it is lower
if grep -q avx512f /proc/cpuinfo; then run aten-avx2 ATEN_CPU_CAPABILITY=avx2; fi
run onednn-sse41 ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
run threads-2 THREEREGIME_TEST_THREADS=2
python tests/tolerance_log.py "$out"/*.tsv > "$out/TOLERANCES-table.md"
cat "$out/TOLERANCES-table.md"
exit $status
