#!/usr/bin/env bash
# Contextrast++'s training-step cost over Contextrast on HRNetV2-W48 (issue 34), CamVid and ADE20K
# size: time from interleaved pairs in one process (wall and process CPU time), peak live tensors
# from one child per configuration, and the plain implementation's cost. One thread (a shared
# machine: each process keeps to its core). Results: $OUT (default bench-plus-plus/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-plus-plus}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
B=benchmarks/contrast_overhead.py
CAMVID="--preset camvid --batch 8 --height 360 --width 480 --num-classes 11"
ADE="--preset ade20k --batch 6 --height 512 --width 512 --num-classes 150 --spread-classes"
run() { name=$1; shift; echo "== $name"; python $B --method contextrast++ --baseline contextrast "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"; tail -n 8 "$OUT/$name.log"; }
run camvid_time $CAMVID --paired 6
run camvid_memory $CAMVID --rounds 1 --steps 1
run ade20k_time $ADE --paired 6
run ade20k_memory $ADE --rounds 1 --steps 1
run camvid_plain_time $CAMVID --implementation plain --paired 2
