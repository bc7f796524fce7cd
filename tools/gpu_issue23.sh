#!/usr/bin/env bash
# Issue 23's GPU checks in one run, for a machine with CUDA (an H100 or H200
# takes about 6–8 minutes; nothing is downloaded). Run from the repository root:
#
#     OUT=gpu_issue23 bash tools/gpu_issue23.sh
#
# 1. GPU encode -> CPU decode of 50 photos per architecture, default and
#    portable mode (tools/cross_device.py): wrong decodes, caught or not.
#    Targets: 0 undetected in every mode, 0 detected in portable mode.
# 2. Decode time, base vs shielded, on CUDA at 512x768 (tools/bench_decode.py),
#    and g_s alone (--synthesis). Targets: shielded/base <= 1.05, g_s <= 1.10.
# 3. What the guard costs on CUDA (tools/bench_guard.py) and where a shielded
#    decode spends its time beyond CompressAI's (tools/decode_breakdown.py):
#    the 25-35 ms BENCHMARKS.md's GPU section leaves unexplained.
# 4. Portable decode time on CUDA (tools/bench_portable.py).
# Every step writes a JSON file and a Markdown table under $OUT; a failing step
# does not stop the others (the exit status is that of the last failure).
# DEVICE=cpu PHOTOS=2 REPEATS=3 SIZE="128 192" runs the same steps small, as a
# rehearsal on a machine without a GPU; PYTHON names the interpreter.
set -u
OUT=${OUT:-gpu_issue23}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
PHOTOS=${PHOTOS:-50}
REPEATS=${REPEATS:-10}
SIZE=${SIZE:-512 768}
read -r HEIGHT WIDTH <<<"$SIZE"
mkdir -p "$OUT"
export OMP_WAIT_POLICY=PASSIVE
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

step() {
    local name=$1
    shift
    echo "== $name: $*"
    local began=$SECONDS
    "$@" >"$OUT/$name.md" 2>"$OUT/$name.err"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        status=$rc
        echo "   failed ($rc), see $OUT/$name.err"
    fi
    echo "   $((SECONDS - began)) s"
    cat "$OUT/$name.md"
}

# The bounded rANS decoder (C extension) is an ignored build output: build it here
# if the copy of the tree lacks it, so that the guard's bounded route is measured.
"$PYTHON" -c "from compressai_psic.models import rans; assert rans.available()" 2>/dev/null ||
    "$PYTHON" setup.py -q build_ext --inplace >"$OUT/build_ext.log" 2>&1 ||
    echo "   the C extension did not build: decodes pad (see $OUT/build_ext.log)"

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$PYTHON" -c "from compressai_psic.models import rans; print('bounded rANS decoder:', rans.available())"
    "$PYTHON" -c "import torch, compressai; print(torch.__version__, torch.version.cuda, compressai.__version__)"
    lscpu | grep -m1 "Model name"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

step cross_device "$PYTHON" tools/cross_device.py --encode-device "$DEVICE" \
    --decode-device cpu --photos "$PHOTOS" --json "$OUT/cross_device.json"
step bench_decode "$PYTHON" tools/bench_decode.py --device "$DEVICE" \
    --repeats "$REPEATS" --height "$HEIGHT" --width "$WIDTH" \
    --json "$OUT/bench_decode.json"
step bench_synthesis "$PYTHON" tools/bench_decode.py --device "$DEVICE" \
    --repeats "$REPEATS" --height "$HEIGHT" --width "$WIDTH" --synthesis \
    --json "$OUT/bench_synthesis.json"
for tool in decode_breakdown bench_guard bench_portable; do
    step "$tool" "$PYTHON" "tools/$tool.py" --device "$DEVICE" --repeats "$REPEATS" \
        --size "$HEIGHT" "$WIDTH" --json "$OUT/$tool.json"
done
exit $status
