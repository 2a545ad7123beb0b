#!/usr/bin/env bash
# Drive the `paper` tier on a lent GPU machine (the `device` tool; see docs/benchmarks.md).
#
#   bash benchmarks/gpu_session.sh start SECONDS   # install, start the grid in the background,
#                                                  # run the GPU checks, then watch
#   bash benchmarks/gpu_session.sh watch SECONDS   # keep watching a grid started earlier
#
# The machine has no network: chemprop, RDKit and DeepChem travel as wheels in .whl/, and the
# data and the ADMET-AI checkpoint in .bench/ (a copy of ../shared's files). Both folders are
# git-ignored and named in the tool's `carry`. Prepare them once, here:
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform any \
#       -d .whl chemprop==2.3.1 astartes ConfigArgParse cuik_molmaker_pin descriptastorus \
#       myerson pandas-flavor rdkit multiprocess dill    # + deepchem==2.8.0 (--python-version 3.11)
#   mkdir -p .bench/data/moleculenet .bench/models .bench/lib
#   cp ../shared/data/moleculenet/{HIV,Lipophilicity}.csv .bench/data/moleculenet/
#   cp ../shared/models/admet_ai_v2_classification_model_0.pt .bench/models/
#   cp -L /lib/x86_64-linux-gnu/lib{Xrender,X11,Xext,xcb,Xau,Xdmcp,bsd,md}.so.* .bench/lib/
#
# (the X libraries are what cuik_molmaker's extension links and the GPU image lacks). The grid
# runs in its own process session so it outlives each call; every call copies the results CSV,
# the grid log and the check logs into $OUT. Put an earlier results CSV in
# .bench/results/paper.csv to resume it on a fresh machine.
set -u
mode=$1
budget=${2:-540}
BENCH=/tmp/molpeg-bench
JOBS=${JOBS:-12}
mkdir -p "$BENCH"
t0=$(date +%s)

collect() {
    cp "$BENCH"/results/paper.csv "$OUT"/ 2>/dev/null
    cp "$BENCH"/grid.log "$OUT"/ 2>/dev/null
    cp "$BENCH"/checks.log "$OUT"/ 2>/dev/null
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >"$OUT"/gpu.txt 2>&1
    uptime >>"$OUT"/gpu.txt
}

export LD_LIBRARY_PATH=$PWD/.bench/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}  # X libs cuik_molmaker links

if [ "$mode" = start ]; then
    pkill -f benchmarks/run.py && sleep 2  # a grid left by an earlier start
    mkdir -p "$BENCH"/results && [ ! -f "$BENCH"/results/paper.csv ] && cp .bench/results/paper.csv "$BENCH"/results/ 2>/dev/null  # resume
    python3 -m pip install -q --no-index --no-deps --no-compile --ignore-requires-python .whl/*.whl || exit 3
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 3
    python3 -c "import chemprop, molpeg_chemprop, torch; print('chemprop', chemprop.__version__,
        'torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 3
    MOLPEG_SHARED=$PWD/.bench PYTHONUNBUFFERED=1 setsid nohup python3 benchmarks/run.py \
        --tier paper --jobs "$JOBS" --threads 1 --no-report --work "$BENCH/work" \
        --results "$BENCH/results" >"$BENCH"/grid.log 2>&1 </dev/null &
    {
        python3 -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15
        python3 -c "from molpeg_plugins.cli import main; main()" prune --output "$BENCH/cli-torch" --backend torch \
            --device cuda --epochs 3 2>&1 | tail -5
        python3 -c "from molpeg_plugins.cli import main; main()" prune --output "$BENCH/cli-chemprop" --backend chemprop \
            --device cuda --epochs 3 2>&1 | tail -5
    } >"$BENCH"/checks.log 2>&1
    collect
fi

while [ $(($(date +%s) - t0)) -lt "$budget" ]; do
    sleep 15
    collect
    if grep -q FAILED "$BENCH"/grid.log; then
        echo "a run failed:"; grep FAILED "$BENCH"/grid.log | head -3
        f=$(grep -o 'see [^ ]*\.log' "$BENCH"/grid.log | head -1 | cut -c5-)
        [ -n "$f" ] && tail -30 "$f" && cp "$f" "$OUT"/failed_run.log
        break
    fi
    pgrep -f "benchmarks/run.py" >/dev/null || { echo "grid finished"; break; }
done
collect
echo "rows: $(($(wc -l <"$OUT"/paper.csv 2>/dev/null || echo 1) - 1))"
tail -5 "$BENCH"/grid.log
cat "$BENCH"/checks.log 2>/dev/null | tail -30
