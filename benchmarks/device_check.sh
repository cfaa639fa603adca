#!/usr/bin/env bash
# The GPU checks of issues 12 and 14, prepared as one run for a session that is lent a device
# machine (an H100/H200 with CUDA PyTorch but no Pyro, no internet, ~15 minutes of device time in
# all, at most 10 minutes per command).
#
#   bash benchmarks/device_check.sh prepare   # here: Pyro's wheels into .whl/, MNIST into .data/
#   # then, through the device tool: carry [".whl", ".data"], command
#   #   bash benchmarks/device_check.sh run     # writes everything under $OUT
#
# `run` does, each step under its own time limit so that the whole stays under ~8.5 minutes
# (with a machine's start, one run fits the 15 minutes of device time; a rerun does not):
#   1. the CUDA tests (`-m cuda`) and the estimator contract tests with `--device cuda`;
#   2. estimator_speed.py --device cuda (elbo, iwae, dreg; K = 1, 50; B = 100; Pyro's SVI
#      beside it: issue 12's "compiled step >= 3x faster than Pyro SVI Trace_ELBO at K=1");
#   3. iwae_table.py on CUDA, one epoch of IWAE k=50 and the k=5000 test NLL of all 10,000 test
#      images: its eval_seconds is issue 14's "under 60 s on one H100/H200" (evaluation time does
#      not depend on how long the model trained).
# $OUT then holds at most six files (the device tool brings back eight): log.txt, the speed table
# and the IWAE row (.json/.md, and its figure). Copy them into benchmarks/results/ (they name the
# device) and commit.
# On a machine without a GPU, DEVICE=cpu SMOKE=1 runs the same steps in seconds (a test of this
# script, not a measurement).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
PYTHON=${PYTHON:-python3}

prepare() {
    mkdir -p .whl .data/mnist
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl pyro-ppl==1.9.2 pyro-api==0.1.2
    cp "${DATA_DIR:-../shared/data}"/mnist/*-ubyte.gz .data/mnist/
    du -sh .whl .data
}

step() {  # step NAME SECONDS COMMAND...: run with a time limit, its output into $OUT/log.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee -a "$OUT/log.txt"
    local began=$SECONDS
    timeout "$limit" "$@" >/tmp/device_check_step.txt 2>&1
    local status=$?
    cat /tmp/device_check_step.txt >>"$OUT/log.txt"
    echo "   exit $status after $((SECONDS - began)) s; last lines:" | tee -a "$OUT/log.txt"
    tail -n 4 /tmp/device_check_step.txt | sed 's/^/   | /'
}

run() {
    mkdir -p "$OUT"
    export PYTHONUNBUFFERED=1
    if ! "$PYTHON" -c "import pyro" 2>/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    (nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; "$PYTHON" -c \
        "import torch, pyro; print(torch.__version__, pyro.__version__, torch.cuda.is_available())") \
        >"$OUT/log.txt" 2>&1
    cat "$OUT/log.txt"
    local tests=(tests/estimators/test_contract.py)
    local speed=(--estimators elbo,iwae,dreg --ks 1 50 --batch-sizes 100 --compiled elbo)
    local table=(--budget 1 --rows iwae-k50 --eval-samples 5000)
    if [ "$SMOKE" = 1 ]; then
        tests=(tests/estimators/test_contract.py -k "exact_on_every_draw and elbo")
        speed=(--smoke)
        table=(--smoke)
    fi
    step cuda_tests 60 "$PYTHON" -m pytest -q -p no:cacheprovider -n 0 -m cuda tests
    step contract_on_device 60 "$PYTHON" -m pytest -q -p no:cacheprovider -n 4 \
        --device "$DEVICE" "${tests[@]}"
    step estimator_speed 180 "$PYTHON" benchmarks/estimator_speed.py --device "$DEVICE" \
        --out "$OUT" "${speed[@]}"
    step iwae_table 200 "$PYTHON" benchmarks/iwae_table.py --data-dir .data --device "$DEVICE" \
        --out /tmp/device_check_iwae --results "$OUT/iwae_table_$DEVICE" "${table[@]}"
    ls -la "$OUT"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash benchmarks/device_check.sh prepare|run" >&2; exit 2 ;;
esac
