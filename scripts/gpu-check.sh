#!/usr/bin/env bash
# One command for a GPU machine (issue 14; an H200 here), at most 8 minutes in all:
#   1. build the addon with the CUDA backend required (DSMOE_CUDA=on) and the TypeScript (dist/);
#   2. the device: cudaInfo(); stops here, non-zero, when no CUDA device is usable (and says why);
#   3. the all-backends harness: the kernel suites' cpu and cuda rows (gemm, gemv, nn, routing,
#      attention, backend-ops; every Backend op on the CUDA backend against the double references)
#      and the CUDA build checks (cuda.test.ts);
#   4. scripts/gpu-parity.js: `dsmoe train` of tiny and small, 50 steps, on cpu and on cuda from the
#      same seed (losses within the bf16 tolerance written there: step 1 ≤ 5e-3, every step ≤ 2e-2
#      relative), then greedy generation over the same weights on both (the first 4 tokens equal);
#   5. scripts/gpu-bench.js: bf16 GEMM, grouped expert GEMM (balanced, skewed), copy bandwidth, training
#      tokens/s and MFU (medium, a 4-layer ds-moe-1b shape), decode tokens/s dense vs sparse;
#   6. one JSON summary on stdout (also bench-results/gpu-check.json): every step's status and time, the
#      harness counts, the parity and benchmark numbers.
# A failing step does not stop the later ones (one run tells as much as it can); a step that would
# start with too little of the 8 minutes left is skipped and says so.
#
# Usage (from anywhere):
#   scripts/gpu-check.sh                 # everything above
#   scripts/gpu-check.sh --no-build      # reuse build/Release/dsmoe.node and dist/
#   scripts/gpu-check.sh --quick         # shorter benchmark
#   scripts/gpu-check.sh --sanitize      # also the routing and attention suites under compute-sanitizer
#                                        # (memcheck; slow, outside the 8 minutes' plan)
#   GPU_CHECK_BUDGET_S=480 GPU_CHECK_OUT=bench-results scripts/gpu-check.sh
# Needs: Node >= 20 with this checkout's node_modules (npm install; on an offline machine run
# `npm install --ignore-scripts` elsewhere and bring node_modules), and for the build cmake and nvcc
# (CUDA 12 or 13). A driver and a GPU of compute capability >= 8.0 for steps 2-5.
# Exit status: 0 when every step passed; else the first failing step's status (3: no usable device).
set -uo pipefail
cd "$(dirname "$0")/.."
build=1 quick=0 sanitize=0
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    --quick) quick=1 ;;
    --sanitize) sanitize=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $a (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
budget="${GPU_CHECK_BUDGET_S:-480}"
out="${GPU_CHECK_OUT:-bench-results}"
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
step() { printf '\n=== %s (%s, %ss of %ss left)\n' "$1" "$(date +%T)" "$(left)" "$budget"; }
die() { echo "gpu-check: $*" >&2; exit 1; }

# ---- what the machine must have -------------------------------------------------------------------
command -v node >/dev/null || die "node not found: install Node >= 20 (e.g. the linux-x64 tarball from \
nodejs.org unpacked into \$HOME, then PATH=\$HOME/node-v20.../bin:\$PATH)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node $(node --version) is too old: install Node >= 20"
command -v npx >/dev/null || die "npx not found (it comes with Node): reinstall Node >= 20"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
[ -d node_modules ] || die "node_modules missing: run 'npm install' (offline machine: 'npm install \
--ignore-scripts' elsewhere, then bring node_modules)"
if [ "$build" = 1 ]; then
  if ! command -v nvcc >/dev/null; then
    for d in /usr/local/cuda/bin /usr/local/cuda-13*/bin /usr/local/cuda-12*/bin; do
      [ -x "$d/nvcc" ] && { PATH="$d:$PATH"; break; }
    done
  fi
  command -v nvcc >/dev/null || die "nvcc not found: install the CUDA toolkit (12 or 13) or put its bin/ on \
PATH (or run with --no-build on an addon built elsewhere with DSMOE_CUDA=on)"
  command -v cmake >/dev/null || die "cmake not found (cmake-js needs it): apt-get install cmake, or pip install cmake"
else
  [ -f build/Release/dsmoe.node ] || die "--no-build: build/Release/dsmoe.node missing (build it: \
DSMOE_CUDA=on node scripts/build-addon.js)"
  [ -d dist ] || die "--no-build: dist/ missing (build it: npx tsc -p tsconfig.json)"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
else
  echo "gpu-check: note: nvidia-smi not found (no NVIDIA driver installed?); the device step decides"
fi

mkdir -p "$out"
steps_file="$out/gpu-check-steps.tsv"
: > "$steps_file"
first_rc=0
# record NAME RC SECONDS NOTE
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$steps_file"
  if [ "$2" != 0 ] && [ "$first_rc" = 0 ]; then first_rc=$2; fi
}
# run NAME CAP_SECONDS CMD...: runs under timeout min(CAP, time left); skipped with under 20 s left.
run() {
  local name=$1 cap=$2; shift 2
  local t; t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 20 ]; then
    echo "gpu-check: $name skipped: out of time ($(left)s of ${budget}s left)"
    record "$name" 124 0 "skipped: out of time"
    return
  fi
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$t" "$@" || rc=$?
  local note=""
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && note="cut at ${t}s"
  record "$name" "$rc" $((SECONDS - t0)) "$note"
}

summary() {
  node - "$out" "$budget" $((SECONDS - start)) <<'EOF'
const fs = require('node:fs'), path = require('node:path');
const [out, budget, wall] = process.argv.slice(2);
const read = (f) => { try { return JSON.parse(fs.readFileSync(path.join(out, f), 'utf8')); } catch { return null; } };
const steps = fs.readFileSync(path.join(out, 'gpu-check-steps.tsv'), 'utf8').trim().split('\n').filter(Boolean)
  .map((l) => { const [name, rc, seconds, note = ''] = l.split('\t');
    return { name, status: rc === '0' ? 'pass' : note.startsWith('skipped') ? 'skipped' : 'fail', exitCode: +rc,
      seconds: +seconds, ...(note ? { note } : {}) }; });
const jest = read('gpu-check-jest.json'), parity = read('gpu-check-parity.json'), bench = read('gpu-bench.json');
const device = read('gpu-check-device.json');
const s = {
  pass: steps.length > 0 && steps.every((x) => x.status === 'pass'),
  wallSeconds: +wall, budgetSeconds: +budget,
  device: device && { available: device.available, name: device.name, computeCapability: device.computeCapability,
    reason: device.reason, driverVersion: device.driverVersion, runtimeVersion: device.runtimeVersion },
  steps,
  harness: jest && { passed: jest.numPassedTests, failed: jest.numFailedTests, skipped: jest.numPendingTests,
    failedTests: jest.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed')
      .map((a) => `${path.basename(f.name)}: ${a.fullName}`)) },
  parity: parity && { pass: parity.pass && parity.complete, complete: parity.complete, tolerances: parity.tolerances,
    training: parity.training.map((t) => ({ preset: t.preset, pass: t.pass, firstStepRel: t.firstStepRel,
      maxRel: t.maxRel, finalLossCpu: t.cpuLosses?.at(-1), finalLossCuda: t.cudaLosses?.at(-1),
      cpuSeconds: t.cpuSeconds, cudaSeconds: t.cudaSeconds, error: t.error })),
    generation: parity.generation.map((g) => ({ preset: g.preset, routing: g.routing, pass: g.pass,
      sameLeadingTokens: g.sameLeadingTokens, error: g.error })) },
  bench: bench && { measuredGemmPeakTflops: bench.measuredPeakTflops, specPeakTflops: bench.specPeakTflops,
    groupedGemm: bench.grouped.map((g) => ({ groups: g.groups, tflops: g.tflops })),
    training: bench.training.map((t) => ({ model: t.model, tokensPerSecond: t.tokensPerSecond, mfu: t.mfu,
      tflops: t.tflops, error: t.error })),
    decode: bench.decode.map((d) => ({ routing: d.routing, tokensPerSecond: d.tokensPerSecond, speedup: d.speedup,
      idealSpeedup: d.idealSpeedup, ofIdeal: d.ofIdeal, error: d.error })) },
};
fs.writeFileSync(path.join(out, 'gpu-check.json'), JSON.stringify(s, null, 2) + '\n');
console.log('\n=== summary (also ' + path.join(out, 'gpu-check.json') + ')');
console.log(JSON.stringify(s, null, 2));
EOF
}

# ---- 1. build ---------------------------------------------------------------------------------------
if [ "$build" = 1 ]; then
  step "build: DSMOE_CUDA=on (fails without nvcc), then the TypeScript"
  run build 240 bash -c 'DSMOE_CUDA=on node scripts/build-addon.js && npx tsc -p tsconfig.json'
  if [ "$first_rc" != 0 ]; then summary; echo "gpu-check: the build failed" >&2; exit "$first_rc"; fi
fi

# ---- 2. the device -----------------------------------------------------------------------------------
step "device"
rm -f "$out/gpu-check-device.json"
dev_rc=0
node - "$PWD/build/Release/dsmoe.node" "$out/gpu-check-device.json" <<'EOF' || dev_rc=$?
const fs = require('node:fs');
const i = require(process.argv[2]).cudaInfo();
fs.writeFileSync(process.argv[3], JSON.stringify(i, null, 2) + '\n');
console.log(JSON.stringify(i, null, 2));
if (!i.compiled) {
  console.error('gpu-check: the addon was built without CUDA (rebuild with DSMOE_CUDA=on and nvcc on PATH)');
  process.exit(3);
}
if (!i.available) { console.error('gpu-check: no usable CUDA device: ' + i.reason); process.exit(3); }
EOF
record device "$dev_rc" 0 ""
if [ "$dev_rc" != 0 ]; then
  summary
  echo "gpu-check: stopped: nothing below can run without a usable CUDA device" >&2
  exit "$dev_rc"
fi

# ---- 3. the all-backends harness ----------------------------------------------------------------------
step "harness: the kernel suites on every backend (cuda rows against the double references) + CUDA build checks"
# test/helpers.ts forEachBackend runs each kernel suite once per backend; KNOWN_GAPS is empty since
# issue 14: every Backend op's cuda row runs the real comparison.
run harness 150 env DSMOE_EXPECT_CUDA=1 npx jest \
  'test/native/(gemm|gemv|nn|routing|attention|backend-ops|cuda[^/]*)\.test\.ts$' \
  --json --outputFile="$out/gpu-check-jest.json" --verbose
if [ "$sanitize" = 1 ]; then
  step "compute-sanitizer memcheck: routing, attention and backend-ops suites"
  if command -v compute-sanitizer >/dev/null; then
    run sanitize 600 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 \
      npx jest 'test/native/(routing|attention|backend-ops)\.test\.ts$'
  else
    echo "gpu-check: compute-sanitizer not found (it comes with the CUDA toolkit)"; record sanitize 1 0 "not found"
  fi
fi

# ---- 4. whole models: training and greedy generation, cuda against cpu ----------------------------------
step "parity: tiny and small, 50 training steps and greedy generation, cuda against cpu"
run parity 180 node scripts/gpu-parity.js --presets tiny,small --steps 50 --out "$out/gpu-check-parity.json"

# ---- 5. benchmarks ---------------------------------------------------------------------------------------
step "benchmark (scripts/gpu-bench.js)"
bench_args=()
if [ "$quick" = 1 ] || [ "$(left)" -lt 150 ]; then bench_args+=(--quick); fi
run bench 200 node scripts/gpu-bench.js --out "$out/gpu-bench.json" ${bench_args[@]+"${bench_args[@]}"}

summary
exit "$first_rc"
