#!/usr/bin/env bash
# Everything issue 15 measures on a GPU machine, in one command, each part under its own time
# limit so that one failing part does not cost the others. Logs go to $OUT (default ./gpu_out).
#
#   bash benchmarks/gpu_session.sh [parts]     # parts: comma list, default all of
#       env,tests,bench,projection,snakemake
#
# Snakemake is needed only for the `snakemake` part; on a machine without it, wheels in .whl/
# are installed to /tmp/site first (see benchmarks/README.md, "GPU session").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PARTS=${1:-env,tests,bench,projection,snakemake}
BENCH_ARGS=${BENCH_ARGS:-"--synthetic-cifar --workers 8 --epochs 3 --extra ceilings,eager,compile,scan,lmcvar,profile --profile-steps 30"}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

if has env; then
  { stamp env; nvidia-smi; python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
torchvision.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version());
print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))"; nproc; free -g; } >"$OUT/env.txt" 2>&1
fi
if has tests; then
  stamp tests
  timeout -k 5 "${TESTS_LIMIT:-120}" python3 -m pytest -q -s -m gpu tests/test_gpu.py -p no:cacheprovider \
    >"$OUT/gpu_tests.txt" 2>&1; echo "rc=$?" >>"$OUT/gpu_tests.txt"
  tail -3 "$OUT/gpu_tests.txt"
fi
if has bench; then
  stamp bench
  # shellcheck disable=SC2086
  timeout -k 5 "${BENCH_LIMIT:-330}" python3 benchmarks/retrain_benchmark.py $BENCH_ARGS --out "$OUT" \
    >"$OUT/bench.txt" 2>&1; echo "rc=$?" >>"$OUT/bench.txt"
  sed -n '/== summary/,$p' "$OUT/bench.txt"
fi
if has projection; then
  stamp projection
  timeout -k 5 "${PROJECTION_LIMIT:-150}" python3 benchmarks/study_projection.py ${PROJECTION_ARGS:-} \
    >"$OUT/projection.txt" 2>&1; echo "rc=$?" >>"$OUT/projection.txt"
  sed -n '/== projected/,$p' "$OUT/projection.txt"
fi
if has snakemake; then
  stamp snakemake
  {
    if ! python3 -c "import snakemake" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
      export PYTHONPATH=$PYTHONPATH:/tmp/site PATH=/tmp/site/bin:$PATH
    fi
    work=$(mktemp -d)
    cat >"$work/gpu_tiny.yaml" <<'EOF'
default_studies: [gputiny]
studies:
  gputiny:
    temperature: {axis: epochs, values: [2, 4]}
    load: {axis: density, values: [0.1, 0.5]}
    data: {name: digits, root: "", download: false, crop_padding: 1, hflip: false}
    model: {depth: 8, width: 1}
    train: {epochs: 4, milestones: [2], checkpoint_every: 2}
    retrain: {epochs: 2, milestones: [1]}
    seeds: {dense: [1], retrain: [1, 2, 3]}
    landscape: {points: 3, cka_samples: 300}
EOF
    t0=$(date +%s)
    timeout -k 5 "${SNAKEMAKE_LIMIT:-150}" python3 -m snakemake -s "$PWD/Snakefile" -d "$work" --profile "$PWD/profiles/local" \
      --configfile "$work/gpu_tiny.yaml"
    echo "rc=$? in $(( $(date +%s) - t0 )) s"
    echo "--- device lines of every job log"
    grep -rH "device:" "$work/results/logs" | sed "s|$work/||"
    echo "--- one retraining log"
    find "$work/results/logs" -path "*retrain*" -name "*.log" | head -1 | xargs cat
  } >"$OUT/snakemake.txt" 2>&1
  tail -25 "$OUT/snakemake.txt"
fi
stamp done
