#!/usr/bin/env bash
# The measurements still owed on a GPU (issue #5, docs/benchmarks.md), for a session that is
# lent one by the device tool. Each stage fits one 10-minute device call; results go to $OUT.
#
#   bash tools/gpu_session.sh checks    # correctness on the GPU, and conv1's ways (~3 min)
#   bash tools/gpu_session.sh compile   # compiled bf16 training: Triton LRN vs Inductor's (~8 min)
#   bash tools/gpu_session.sh eager     # the default eager table, all dtypes (~5 min)
#   bash tools/gpu_session.sh serve     # alexnet serve --device cuda against the CPU (~2 min)
#
# The device's image has torch, Triton, numba and the rest of pyproject's dependencies; the
# package runs from src/ without installing.
set -euo pipefail
OUT=${OUT:-/tmp/alexnet-gpu}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
bench=("$python" -m alexnet bench model --device cuda --repeats 5 --steps 20)

case "${1:-}" in
checks)
    nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/gpu.txt"
    "$python" tests/kernels/cuda_checks.py | tee "$OUT/cuda-checks.txt"
    for layout in "" --channels-last; do
        "$python" tools/bench_conv1.py --device cuda --dtype bf16 $layout | tee -a "$OUT/conv1.txt"
        "$python" tools/bench_conv1.py --device cuda --dtype fp32 $layout | tee -a "$OUT/conv1.txt"
    done
    ;;
compile)
    "${bench[@]}" --dtypes bf16 --compile --lrn-backend triton \
        --output "$OUT/bench-model-gpu-compile-triton.json"
    "${bench[@]}" --dtypes bf16 --compile --output "$OUT/bench-model-gpu-compile.json"
    ;;
eager)
    "${bench[@]}" --output "$OUT/bench-model-gpu.json"
    ;;
serve)
    "$python" tools/serve_gpu_check.py --device cuda --output "$OUT/serve-gpu.json"
    ;;
*)
    echo "usage: bash tools/gpu_session.sh checks|compile|eager|serve" >&2
    exit 2
    ;;
esac
