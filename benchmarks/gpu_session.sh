#!/usr/bin/env bash
# Everything the CPU machine cannot check, in one call of under 10 minutes on a lent GPU.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]      # from the repository root
#
# Writes into OUT_DIR (default: $OUT, else ./gpu_out), one file per step, and goes on after
# a failed step (each has its own time limit, so a hang cannot eat the call):
#   env.txt                  GPU, driver, torch, cuDNN
#   pytest_gpu.txt           tests/gpu: sync-free step under CUDA's detector, float64
#                            parity of the deferred heads, CPU/GPU loss equality, resume,
#                            bf16 and fp16 (GradScaler) runs, a one-GPU torchrun run (two-GPU
#                            torchrun + SyncBatchNorm where the machine has 2 GPUs), boundary
#                            metrics and sliding-window inference equal on CPU and GPU
#   sampling_speed.txt       the loss alone at CamVid size (K = 11), with a profile (Contextrast++ too)
#   sampling_speed_k150.txt  the loss alone at ADE20K size (K = 150, B = 12, 512x512): wall and
#                            kernel time (issue 26)
#   overhead_r50.{json,err}  training-step time and peak memory, DeepLabV3-ResNet-50 OS8
#   overhead_hrnet.{json,err}  the same for HRNetV2-W48 (the camvid preset's network)
#   plus_plus_hrnet.{json,err}  Contextrast++ over Contextrast on HRNetV2-W48: step time (6
#                            interleaved pairs) and peak memory (issue 34)
#   bf16_<preset>.{json,err}  one bf16 training step (CE and Contextrast, paired) of each issue-35
#                            network at its preset's crop: cityscapes-segformer-b0, ade20k-segformer-b1,
#                            cityscapes-upernet-swin-t, cityscapes-mobilenetv2 (not yet run on a GPU)
#   ablation/ablation.md     when CamVid is found (CONTEXTRAST_CAMVID or ../shared/camvid) and
#                            time remains: camvid-lite none vs contextrast over 3 seeds on the
#                            GPU (issue 28), the session's last step
#   status.txt               each step's exit status
# Runs from the source tree (PYTHONPATH). A machine image without pydantic gets it from
# wheels in .whl/ when they were carried along.
set -uo pipefail
out="${1:-${OUT:-gpu_out}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import pydantic" 2>/dev/null || pip install --quiet --no-index --find-links .whl pydantic

step() {  # step NAME LIMIT_S COMMAND...: run, keep the exit status
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@"
  echo "$name $?" >> "$out/status.txt"
}

{
  nvidia-smi
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"
} > "$out/env.txt" 2>&1
step pytest_gpu 180 python -m pytest -q tests/gpu > "$out/pytest_gpu.txt" 2>&1
step sampling_speed 90 python benchmarks/sampling_speed.py --device cuda --repeats 30 --profile --plus-plus \
  > "$out/sampling_speed.txt" 2>&1
step sampling_speed_k150 90 python benchmarks/sampling_speed.py --device cuda --repeats 20 --batch 12 \
  --size 512x512 --classes 150 --spread-classes --profile --plus-plus > "$out/sampling_speed_k150.txt" 2>&1
step overhead_r50 150 python benchmarks/contrast_overhead.py --device cuda --model deeplabv3 --backbone resnet50 \
  --output-stride 8 --rounds 2 --steps 10 > "$out/overhead_r50.json" 2> "$out/overhead_r50.err"
step overhead_hrnet 150 python benchmarks/contrast_overhead.py --device cuda --preset camvid --rounds 2 --steps 10 \
  > "$out/overhead_hrnet.json" 2> "$out/overhead_hrnet.err"
step plus_plus_hrnet 120 python benchmarks/contrast_overhead.py --device cuda --preset camvid --method contextrast++ \
  --baseline contextrast --paired 6 > "$out/plus_plus_hrnet.json" 2> "$out/plus_plus_hrnet.err"
for preset in cityscapes-segformer-b0 ade20k-segformer-b1 cityscapes-upernet-swin-t cityscapes-mobilenetv2; do
  # issue 35: one bf16 Contextrast training step (and its CE pair) of each new network at its preset's crop
  step "bf16_$preset" 60 python benchmarks/contrast_overhead.py --device cuda --precision bf16 --preset "$preset" \
    --height "$(python -c "from contextrast_cli.config import resolve_config as r; print(r('$preset').data.crop_size[0])")" \
    --width "$(python -c "from contextrast_cli.config import resolve_config as r; print(r('$preset').data.crop_size[1])")" \
    --paired 1 > "$out/bf16_$preset.json" 2> "$out/bf16_$preset.err"
done
camvid="${CONTEXTRAST_CAMVID:-../shared/camvid}"
if [ -d "$camvid" ] && [ "$SECONDS" -lt 420 ]; then  # the rest of a 10-minute call
  python -m contextrast_cli prepare-data camvid --source "$camvid" --out "$out/camvid" --force > "$out/ablation.log" 2>&1
  step ablation $((590 - SECONDS)) python -m contextrast_cli ablate --preset camvid-lite --methods none,contextrast \
    --seeds 0,1,2 --data-root "$out/camvid" --out "$out/ablation" --set train.device=cuda --set data.workers=4 \
    --no-features >> "$out/ablation.log" 2>&1
  rm -rf "$out/camvid" "$out"/ablation/*/*.pt  # keep the tables, not the data and weights
fi
cat "$out/status.txt"
