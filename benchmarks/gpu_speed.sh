#!/usr/bin/env bash
# The GPU speed run (benchmarks/speed.py --preset gpu), as the GPU machine runs it: from
# the repository root, with the wheels the machine lacks carried in .whl/ (it has torch,
# transformers, matplotlib; not diffusers, pydantic or hydra). Nothing is downloaded.
#
# Here, once (pins as in pyproject.toml; lpips is optional, for the LPIPS column):
#   echo /.whl/ >> .git/info/exclude
#   bash /work/shared/device/fetch-wheels.sh diffusers==0.42.1 hydra-core==1.3.8 omegaconf lpips
# Then on the machine (carry .whl), e.g.:
#   bash benchmarks/gpu_speed.sh            # all six models, ~8 min; results in $OUT/speed
#   bash benchmarks/gpu_speed.sh --profile  # plus a torch.profiler trace of wan-1.3b fast-exact
#   SPEED_TIMEOUT=300 bash benchmarks/gpu_speed.sh --models wan-1.3b,ltx-2b
# Arguments go to speed.py. speed.json is rewritten after every model, so a run cut short
# by the time limit keeps what it measured; speed.py also skips a model whose estimate no
# longer fits its --budget-s (500 s by default on the GPU).
set -u
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_speed: installing the carried wheels failed" >&2; exit 1; }
fi
# Our packages from the tree itself: the plugins are registered by hand where no entry
# points are installed (speed.py's bench_plugins).
export PYTHONPATH="/tmp/site:$PWD:$PWD/plugins/arc_wan21:$PWD/plugins/arc_ltx:$PWD/plugins/arc_longlive:$PWD/plugins/arc_dreamdojo:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_NO_ADVISORY_WARNINGS=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export ARC_FABRIC_CACHE="${ARC_FABRIC_CACHE:-/tmp/arc-fabric-cache}"
out="${OUT:-/tmp/out}/speed"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 -c "import torch, diffusers, pydantic; print('torch', torch.__version__, 'diffusers', diffusers.__version__, \
'pydantic', pydantic.__version__, 'cuda', torch.cuda.is_available())" || exit 1
set -o pipefail
timeout -k 15 "${SPEED_TIMEOUT:-560}" python3 benchmarks/speed.py --preset gpu --out "$out" "$@" 2>&1 | tee "$out/speed.log"
rc=$?
[ "$rc" = 124 ] && echo "gpu_speed: stopped at ${SPEED_TIMEOUT:-560} s; speed.json holds the models finished by then" >&2
exit "$rc"
