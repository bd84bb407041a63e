#!/usr/bin/env bash
# Every check that needs a GPU, for a lent GPU machine (see docs/gpu.md): bench/gpu_run.sh [tests|bench|all]
# the CUDA tests, the CUDA benchmarks (their sections of docs/benchmarks.md) and the whole
# suite with the GPU visible. Packages the machine lacks travel as wheels in .whl/ (docs/gpu.md).
# Logs and results go to $OUT (default /tmp/gpu-out): tests.log, bench.log, suite.log,
# gpu_check.json and the updated benchmarks.md.
# `bench` fits in 8 minutes: its steps' limits add up to 460 s (the set-up takes seconds).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OPENCV_FFMPEG_LOGLEVEL=-8
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "(no console script)"
nvidia-smi -L
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'cv2', cv2.__version__)"

step() {  # step SECONDS LOG COMMAND...: run with a time limit, output appended to $OUT/LOG
    local limit=$1 log=$2; shift 2
    echo "== $* (limit ${limit}s)" | tee -a "$OUT/$log"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$OUT/$log" 2>&1
    local rc=$?
    echo "== rc $rc after $((SECONDS - start)) s: $*" | tee -a "$OUT/$log"
}

what=${1:-all}  # tests: CUDA tests, accuracy check, whole suite; bench: CUDA tests and benchmarks (at most
# 120 + 150 + 130 + 35 + 40 = 475 s); all: both
step 120 tests.log python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
# The keypoint drift of FAST: on TRAINED, a trained pose checkpoint (e.g. runs/e2e_synthetic_9/pose/best.pth,
# carried), or else on a small model trained here for QUICK_EPOCHS epochs (about a minute).
if [ -n "${TRAINED:-}" ]; then drift=(--trained "$TRAINED"); else drift=(--quick-train "${QUICK_EPOCHS:-30}"); fi
# Eager against CUDA graphs and EXACT against FAST, for the pose model (2, 6, 16, 64 crops) and the detector.
step 150 bench.log python3 -m bench.gpu_check --json "$OUT/gpu_check.json" --repeats 20 "${drift[@]}"
if [ "$what" != bench ]; then
    # The whole suite with the GPU visible (the CLI picks CUDA by default). Left out: the web app's
    # tests (gradio is not carried) and detector training (ultralytics' trainer needs polars).
    # -v names each result as it comes, so a run cut short still says which tests failed.
    OMP_NUM_THREADS=2 step ${SUITE_LIMIT:-300} suite.log python3 -m pytest -v -p no:cacheprovider -n 8 \
        --ignore=tests/app/test_web.py \
        --ignore=tests/app/test_web_browser.py --ignore=tests/app/test_web_models.py \
        --ignore=tests/app/test_web_jobs.py --ignore=tests/app/test_web_live.py \
        --ignore=tests/train/test_train_detector.py
fi
if [ "$what" != tests ]; then
    # Today's path against exact and fast (graphs, the detector running ahead), 1/3/8 animals, 720p and 1080p.
    step 130 bench.log python3 -m bench.throughput --device cuda --modes today exact fast --animals 1 3 8 \
        --heights 720 1080 --frames ${PIPELINE_FRAMES:-60}
    step 35 bench.log python3 -m bench.pose --device cuda --models hrnet_w32 res50 --batches 1 8 32 --repeats 10
    step 40 bench.log python3 -m bench.live --device cuda --random hrnet_w32 --frames ${LIVE_FRAMES:-1000} --fps 50
fi
if [ "$what" = all ]; then
    step 90 bench.log python3 -m bench.train --device cuda
fi
cp docs/benchmarks.md "$OUT/benchmarks.md"
tail -n 3 "$OUT/tests.log" "$OUT/suite.log" 2>/dev/null
grep -h "^== rc" "$OUT"/*.log
