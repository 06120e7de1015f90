#!/usr/bin/env bash
# The ONE GPU-machine script (issue 10 point 4), in under 6 minutes: feature probe, kernel checks against the cpu
# backend, the PyTorch twin's fixture check, the per-op and whole-step bench (PyTorch fp32 / TF32 / bf16 and
# tfjs-webgpu with difftalk's kernels — in fp32 and, where the adapter has shader-f16, the GEMM items and the UNet
# step again under --precision mixed, set against PyTorch bf16 autocast — then with tfjs's stock kernels if time
# remains), and a summary. The kernel checks include tests/gpu/mixed.test.ts (the f16 GEMM kernels vs cpu).
# The steps write into a work folder ($DEVICE_WORK, default a fresh temp folder); at the end (also on a timeout or
# an error) $OUT gets at most 8 files, the most the `run` tool brings back: summary.md, log.txt, probe.json,
# kernel-tests.tap, twin-check.json, bench-custom.json, bench-stock.json, and all.tar.gz with every file of the work
# folder (unpack.txt, nvidia-smi.txt, the benches' .md/.log/.txt, stderr of each step).
#
# Here first: bench/gpu/pack.sh (fills .device/). On the GPU machine, from the project root (the `run` tool):
#   command: bash bench/gpu/run-device.sh      carry: [".device"]      timeout_s: 420
# Dry run on this machine (lavapipe + torch CPU; no unpack): DEVICE_DRY=1 BENCH_GPU_SIZE=tiny bash bench/gpu/run-device.sh
# Stage limits (s): KERNEL_TESTS_S (90), BENCH_S (210); the stock-kernel run only starts before TOTAL_S − 60 (TOTAL_S 330).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
# the run tool brings back at most 8 files from $OUT: every step writes into W, and finish() picks what goes to $OUT
W=${DEVICE_WORK:-$(mktemp -d)}
mkdir -p "$W"
start=$SECONDS
TOTAL_S=${TOTAL_S:-330}
log() { echo "[$((SECONDS - start)) s] $*" | tee -a "$W/log.txt"; }
finished=
finish() {
  [ -n "$finished" ] && return
  finished=1
  for f in summary.md log.txt probe.json kernel-tests.tap twin-check.json bench-custom.json bench-stock.json; do
    [ -f "$W/$f" ] && cp "$W/$f" "$OUT/$f"
  done
  tar -czf "$OUT/all.tar.gz" -C "$W" . 2>/dev/null
}
trap finish EXIT

if [ -z "${DEVICE_DRY:-}" ]; then
  # a dry run's link to this checkout's dawn.node must not shadow the one unpacked here
  [ -L .device/node_modules/webgpu/dist ] && rm .device/node_modules/webgpu/dist
  # node, the Vulkan loader and dawn.node (../shared/device/unpack.sh, copied into .device by pack.sh)
  source .device/unpack.sh >"$W/unpack.txt" 2>&1 || { log "unpack failed"; cat "$W/unpack.txt"; }
  nvidia-smi >"$W/nvidia-smi.txt" 2>&1
  export BENCH_PYTHON=${BENCH_PYTHON:-$(command -v python3)}
else
  export BENCH_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
  # dry run: the bundles find webgpu's dawn.node in node_modules instead of unpacking .device/dawn.node.xz
  if [ ! -e .device/node_modules/webgpu/dist ]; then
    ln -s "$PWD/node_modules/webgpu/dist" .device/node_modules/webgpu/dist
    trap 'finish; rm -f .device/node_modules/webgpu/dist' EXIT
  fi
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export DIFFTALK_SHARED=$PWD/.device/shared BENCH_TORCH_DIR=$PWD/bench/torch DEVICE_OUT=$W
log "node $(node --version 2>&1); python $BENCH_PYTHON; size ${BENCH_GPU_SIZE:-full}"

log "probe"
timeout 60 node .device/device.mjs probe >"$W/probe.txt" 2>&1 || log "probe failed (see probe.txt)"

log "kernel checks (tests/gpu against the cpu backend)"
timeout "${KERNEL_TESTS_S:-90}" node --test --test-reporter=tap .device/*.test.mjs >"$W/kernel-tests.tap" 2>&1 || log "kernel checks: failures or timeout (see kernel-tests.tap)"
grep -E '^# (pass|fail|skipped)' "$W/kernel-tests.tap" | tee -a "$W/log.txt"

log "PyTorch twin vs fixtures (CPU)"
timeout 60 "$BENCH_PYTHON" bench/torch/check.py .device/shared/data/fixtures >"$W/twin-check.json" 2>"$W/twin-check.err" || log "twin check failed (see twin-check.err)"

log "bench: PyTorch fp32/TF32/bf16, then tfjs-webgpu with difftalk's kernels"
timeout "${BENCH_S:-210}" node .device/device.mjs bench custom >"$W/bench-custom.txt" 2>&1 || log "bench custom: failed or timed out (partial: bench-custom.log)"

left=$((TOTAL_S - (SECONDS - start)))
if [ "$left" -gt 60 ]; then
  log "bench: tfjs-webgpu with tfjs's stock kernels (DIFFTALK_WEBGPU_KERNELS=stock), $left s left"
  DIFFTALK_WEBGPU_KERNELS=stock BENCH_TORCH_FROM=$W/bench-custom.json timeout "$left" node .device/device.mjs bench stock >"$W/bench-stock.txt" 2>&1 ||
    log "bench stock: failed or timed out (partial: bench-stock.log)"
else
  log "bench stock: skipped ($left s left)"
fi

timeout 20 node .device/device.mjs summary >/dev/null 2>&1
log "done"
finish
cat "$OUT/summary.md"
