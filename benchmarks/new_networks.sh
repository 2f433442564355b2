#!/usr/bin/env bash
# Issue 35: the follow-up's networks on this machine (CPU). For each new preset, the training-step
# overhead of Contextrast over cross-entropy at the preset's crop size (interleaved CE / Contextrast
# child processes: time, CPU time, peak tensor memory, parameters added for training only), then
# onnxruntime vs PyTorch eager latency and the int8 speed-up for SegFormer-B0 and MobileNetV2.
# Random weights (time and memory do not depend on them); batch 2 instead of the presets' 8/16
# (a 2-core CPU); Swin's export is static, so it has no latency row. Writes one JSON file per
# measurement into $OUT.
#
#     OUT=/tmp/new_networks BATCH=2 ROUNDS=2 bash benchmarks/new_networks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/new_networks}
mkdir -p "$OUT"
BATCH=${BATCH:-2}
ROUNDS=${ROUNDS:-2}
overhead() {  # preset height width classes
    python benchmarks/contrast_overhead.py --preset "$1" --height "$2" --width "$3" --num-classes "$4" \
        --batch "$BATCH" --rounds "$ROUNDS" --steps 2 --warmup 1 > "$OUT/overhead-$1.json"
}
overhead ade20k-segformer-b1 512 512 150
overhead cityscapes-mobilenetv2 512 1024 19
overhead cityscapes-segformer-b0 1024 1024 19
overhead cityscapes-upernet-swin-t 512 1024 19
# onnxruntime vs PyTorch eager and the int8 graph, batch-1 360x480 (the export table's size); int8
# calibrated on CamVid train images ($CAMVID: a prepared CamVid, e.g. prepare-data camvid --out
# /tmp/camvid); random weights, so only the latency means anything (the data settings are CamVid's
# so that the gate can run on it)
CAMVID=${CAMVID:-/tmp/camvid}
latency() {  # preset
    python benchmarks/onnx_latency.py --preset "$1" --int8 --data-root "$CAMVID" --calibration-images 16 \
        --verify-images 4 --repeats "${REPEATS:-10}" --set data.dataset=camvid --set data.base_size=null \
        --set eval.mode=whole > "$OUT/latency-$1.json"
}
latency cityscapes-segformer-b0
latency cityscapes-mobilenetv2
