#!/usr/bin/env bash
# The SAM 2 backend's GPU check, for a borrowed GPU machine (no network there): installs the
# Python wheels carried in .whl/ on top of the machine's own torch, then measures, writing logs
# and JSON to $OUT:
#   1. the fidelity tests on CUDA: exact against raw sam2 with sam2's own preprocessing, and
#      (test_sam2_pipeline) tracking with frames resized on the GPU against raw sam2, whose
#      measured mask IoU and logit difference go to cuda_preprocess_tolerance.json;
#   2. the backend benchmark at full image size: clicks, tracking ours vs raw (frames resized on
#      the GPU, and `track_exact` with the PIL path), the long video (bench_cuda.json);
#   3. tracking with the model compiled (sam2's vos_optimized; torch.compile mode $COMPILE_MODE,
#      default "default": sam2's own "max-autotune" autotunes every matrix product and may not
#      fit the time): compile time in a first process (inference.sam2.warmup), frames/s, and the
#      compile time of a second process that starts with the on-disk cache the first one left
#      (bench_compile_cuda.json).
#   4. frames/s with 1, 3, 10 and 30 objects, batched and object by object, against raw sam2
#      (bench_objects_cuda.json).
# Budget: tests <= TEST_TIMEOUT (120 s), benchmark <= BENCH_TIMEOUT (300 s), objects <=
# OBJECTS_TIMEOUT (150 s), each compile process <= COMPILE_TIMEOUT (150 s): about 15 minutes at
# worst, a few in practice. STEPS="tests bench objects compile" (the default) picks the steps:
# where one call may last at most 600 s, run STEPS="tests bench" and then STEPS="objects compile".
#
# Prepare .whl/ on the development machine first (git-ignored through .git/info/exclude; the
# GPU machine has Python 3.12 and torch but none of these):
#   echo /.whl/ >> .git/info/exclude && mkdir -p .whl
#   SAM2_BUILD_CUDA=0 .venv/bin/pip wheel --no-build-isolation --no-deps -w .whl \
#       sam2==1.1.0 iopath==0.1.10 antlr4-python3-runtime==4.9.3
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       hydra-core==1.3.8 omegaconf==2.3.1 msgspec==0.22.0 av==18.1.0
# and run it with the device tool: command "bash scripts/device_check.sh", carry [".whl"].
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/masklog-device-out}"
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 TQDM_DISABLE=1

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
if ! python3 -c "import masklog.inference" 2>/dev/null; then
  # No masklog wheel in .whl/: the package's folders under their import names (as build/typecheck).
  mkdir -p /tmp/pkg/masklog
  for d in domain inference server web; do ln -sfn "$PWD/$d" "/tmp/pkg/masklog/$d"; done
  export PYTHONPATH="/tmp/site:/tmp/pkg:$PWD"
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch, sam2; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
  echo "cpus $(nproc)"; gcc --version 2>/dev/null | head -1
} 2>&1 | tee "$OUT/device.txt"

STEPS="${STEPS:-tests bench objects compile}"

if [[ " $STEPS " == *" tests "* ]]; then
MASKLOG_TEST_DEVICE=cuda timeout "${TEST_TIMEOUT:-120}" python3 -m pytest \
  tests/inference/test_sam2_backend.py tests/inference/test_sam2_pipeline.py tests/inference/test_sam2_warm.py \
  -q -rfs -s --tb=short -p no:cacheprovider 2>&1 | tee "$OUT/pytest_cuda.log" | grep -E "passed|failed|error|on-device preprocessing" | tail -8
cat "$OUT/cuda_preprocess_tolerance.json" 2>/dev/null
fi

if [[ " $STEPS " == *" bench "* ]]; then
timeout "${BENCH_TIMEOUT:-300}" python3 scripts/bench_backends.py --device cuda --image-size 1024 \
  --frames 60 --long-frames 1200 --track 30 --classical --worker-timeout 150 --out "$OUT/bench_cuda.json" 2>"$OUT/bench_cuda.stderr" >/dev/null
echo "bench exit $?"
tail -5 "$OUT/bench_cuda.stderr"
cat "$OUT/bench_cuda.json"
fi

if [[ " $STEPS " == *" objects "* ]]; then
# Frames/s against the number of objects (1, 3, 10, 30), batched and object by object, against raw.
timeout "${OBJECTS_TIMEOUT:-150}" python3 scripts/bench_backends.py --device cuda --image-size 1024 \
  --frames 20 --parts objects --out "$OUT/bench_objects_cuda.json" 2>"$OUT/bench_objects_cuda.stderr" >/dev/null
echo "objects bench exit $?"
tail -3 "$OUT/bench_objects_cuda.stderr"
cat "$OUT/bench_objects_cuda.json"
fi

if [[ " $STEPS " == *" compile "* ]]; then
COMPILE_TIMEOUT="${COMPILE_TIMEOUT:-150}"
timeout $((2 * COMPILE_TIMEOUT + 30)) python3 scripts/bench_backends.py --device cuda --image-size 1024 \
  --frames 60 --parts track --compile "${COMPILE_MODE:-default}" --worker-timeout "$COMPILE_TIMEOUT" \
  --out "$OUT/bench_compile_cuda.json" 2>"$OUT/bench_compile_cuda.stderr" >/dev/null
echo "compile bench exit $?"
tail -5 "$OUT/bench_compile_cuda.stderr"
cat "$OUT/bench_compile_cuda.json"
fi
