#!/usr/bin/env bash
# One call on the GPU machine (Python 3.12, torch+CUDA, no network; see bench_gpu.py's docstring):
# the carried wheels into a folder of their own, then what PARTS names (default: all of them):
#   bench     make bench-gpu's script, writing $OUT/gpu.json
#   gpu       the gpu-marked tests (tests/gpu)
#   numerics  the numerics tests once more on that machine's CPU (another x86 CPU than ours), in the
#             background on cores the bench does not use
#   run(command="PARTS='bench gpu numerics' bash tests/bench/gpu_machine.sh", carry=[".gpu-wheels"], timeout_s=480)
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
PARTS=${PARTS:-bench gpu numerics}
SITE=/tmp/resumo-site
python3 -m pip install --quiet --no-deps --no-index --target "$SITE" .gpu-wheels/*.whl >"$OUT/pip.log" 2>&1 || tail -5 "$OUT/pip.log"
export PYTHONPATH="$SITE:$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ lscpu; grep -m1 flags /proc/cpuinfo; nvidia-smi; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"; } >"$OUT/machine.txt" 2>&1
case " $PARTS " in *" numerics "*)
  (CUDA_VISIBLE_DEVICES= timeout 240 taskset -c 4-15 python3 -m pytest -q -m numerics -p no:cacheprovider --ignore=tests/real --ignore=tests/local -n 6 >"$OUT/numerics.log" 2>&1
   echo "exit $?" >>"$OUT/numerics.log") &
esac
case " $PARTS " in *" gpu "*)
  taskset -c 0-3 python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider >"$OUT/gpu_tests.log" 2>&1; tail -15 "$OUT/gpu_tests.log"
esac
case " $PARTS " in *" bench "*)
  # BENCH_ARGS picks rows and the profile, e.g. --only "default" "static:64" --profile
  eval "taskset -c 0-3 python3 tests/bench/bench_gpu.py --out \"\$OUT/gpu.json\" --budget-s \"\${BENCH_BUDGET_S:-300}\" ${BENCH_ARGS:-}" >"$OUT/bench.log" 2>&1
  grep -E '^\{|^wrote|^one optimizer|Traceback|Error' "$OUT/bench.log" | cut -c1-700
esac
wait
[ -f "$OUT/numerics.log" ] && tail -15 "$OUT/numerics.log"
exit 0
