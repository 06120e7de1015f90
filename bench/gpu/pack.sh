#!/usr/bin/env bash
# Prepare .device/ for bench/gpu/run-device.sh (run here, from the project root, after `npm install`):
#   - ../shared/device/pack.sh: node, the Vulkan loader .debs, webgpu's dawn.node, and these bundles:
#       .device/device.mjs        (bench/gpu/device.ts: probe, bench, summary)
#       .device/<name>.test.mjs   (each tests/gpu/*.test.ts that runs without sharp, the CLI, child processes or wasm:
#                                  the kernel checks against the cpu backend)
#   - .device/shared/data/fixtures/expected.json: the fixtures the twin check and the tests read (a run-time copy in
#     an ignored folder; nothing of ../shared enters the project).
# Then: run with carry [".device"] (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=$(realpath "${DIFFTALK_SHARED:-../shared}")
rm -f .device/*.mjs
entries=(bench/gpu/device.ts)
for f in tests/gpu/*.test.ts; do
  if grep -qE "from 'sharp'|runCli|spawnSync|'wasm'|src/train/core" "$f"; then
    echo "pack: leaving out $f (needs sharp (src/train/core pulls it in), the CLI, a child process or wasm)"
    continue
  fi
  entries+=("$f")
done
if [ -d .git ]; then
  "$SHARED/device/pack.sh" "${entries[@]}"
else
  # a git worktree (.git is a file): shared pack.sh writes .git/info/exclude, so run it from a scratch folder that
  # links the sources, node_modules and .device (.device/ is in .gitignore already)
  root=$PWD
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/.git/info" .device
  for x in node_modules src bench tests package.json tsconfig.json .device; do ln -s "$root/$x" "$scratch/$x"; done
  (cd "$scratch" && "$SHARED/device/pack.sh" "${entries[@]}")
fi
mkdir -p .device/shared/data/fixtures
cp "$SHARED/data/fixtures/expected.json" .device/shared/data/fixtures/
du -sh .device
