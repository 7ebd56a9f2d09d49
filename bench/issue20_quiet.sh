#!/usr/bin/env bash
# The issue-20 measurements in one go, for a quiet machine (nothing else running): the goal table at
# 1 and 2 threads, the GEMM floors with bptt's and torch's steps interleaved, the fused-readout A/B,
# and time to quality. Writes into ${OUT:-docs/performance} (JSON + logs) and prints the goal table.
#   bash bench/issue20_quiet.sh [TEXT]          TEXT: tinyshakespeare (for time to quality)
set -euo pipefail
OUT=${OUT:-docs/performance}
PY=${PY:-.venv/bin/python}
BPTT=${BPTT:-.venv/bin/bptt}
TEXT=${1:-}
mkdir -p "$OUT"
stamp() { echo "== $1: $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/issue20-quiet.log"; }
stamp "bench, 1 thread"
$BPTT bench --cells rnn lstm gru --threads 1 --repeats 11 --budget 10 --clean-blas-env --json "$OUT/issue20-quiet-threads1.json" | tee -a "$OUT/issue20-quiet.log"
stamp "bench, 2 threads"
$BPTT bench --cells rnn lstm gru --threads 2 --repeats 9 --budget 8 --no-extras --clean-blas-env --json "$OUT/issue20-quiet-threads2.json" | tee -a "$OUT/issue20-quiet.log"
stamp "GEMM floors, 1 thread, bptt and torch interleaved"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/gemm_floor.py "$OUT/issue20-quiet-threads1.json" --repeats 9 \
    --with-step --with-torch --json "$OUT/issue20-quiet-floors1.json" | tee -a "$OUT/issue20-quiet.log"
stamp "GEMM floors, 2 threads, bptt and torch interleaved"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/gemm_floor.py "$OUT/issue20-quiet-threads2.json" --threads 2 --repeats 7 \
    --with-step --with-torch --json "$OUT/issue20-quiet-floors2.json" | tee -a "$OUT/issue20-quiet.log"
stamp "fused readout A/B"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/fused_readout.py | tee -a "$OUT/issue20-quiet.log"
MKL=$(ls /tmp/mkl/mkl-*.data/data/lib/libmkl_rt.so.* 2>/dev/null | head -1 || true)
if [ -n "$MKL" ]; then
    stamp "MKL sgemm vs numpy's OpenBLAS"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/mkl_gemm.py "$MKL" | tee -a "$OUT/issue20-quiet.log"
fi
stamp "new cells (minGRU vs GRU step)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/new_cells.py | tee -a "$OUT/issue20-quiet.log"
$PY bench/table.py --issue20 "$OUT/issue20-quiet-threads1.json" "$OUT/issue20-quiet-threads2.json" \
    --floors "$OUT/issue20-quiet-floors1.json" | tee "$OUT/issue20-quiet-table.md"
if [ -n "$TEXT" ]; then
    for spec in "gru 1 1.70 240" "rnn 1 1.70 240" "lstm 2 1.80 300"; do
        set -- $spec
        stamp "time to quality: $1 ${2}x256, target $3"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $PY bench/time_to_quality.py "$TEXT" --cell "$1" --layers "$2" --hidden 256 \
            --target "$3" --max-seconds "$4" --json "$OUT/ttq-$1.json" --figure "docs/performance_ttq_$1.png" \
            | tee -a "$OUT/issue20-quiet.log"
    done
fi
stamp "done"
