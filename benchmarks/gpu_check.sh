#!/usr/bin/env bash
# GPU check for a fresh clone on a machine with one NVIDIA GPU, in about 8 minutes: set up Python (<= 2 min),
# run the CUDA tests, then print one table (generator speed and memory at m=288 for batch 1/8/32 in
# fp32/bf16/fp16 against the literal reference, an end-to-end dub of a 60 s template, one DDP training step
# of frame_256 and clip_288). See benchmarks/gpu_check.py for what each row measures.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--no_compile]     # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run [--out DIR]      # the same code paths on CPU, tiny sizes
#   bash benchmarks/gpu_check.sh --fetch-wheels                 # here: wheels for an offline GPU box -> .whl/
#   bash benchmarks/gpu_check.sh --prepare-inputs               # here: the synthetic base clip -> .gpu_inputs/
#
# Python: .venv when its torch sees the GPU; else a python3 that already has a CUDA torch (e.g. a prepared
# image), with the packages it lacks installed into .gpu-site/ (on PYTHONPATH) from .whl/ (offline) or the
# registry; else `bash setup.sh` installs the CUDA torch build from the registry (LAWDNET_TORCH picks it).
# Without a GPU it says so in one line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
TOTAL_S=${GPU_CHECK_SECONDS:-480}
log() { echo "[gpu_check $((SECONDS - T0))s] $*" >&2; }

DRY=0
PYARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --fetch-wheels)
      # wheels (Python ${GPU_PY_VERSION:-3.12}, manylinux x86-64) of what a CUDA image usually lacks
      mkdir -p .whl
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PY_VERSION:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl av dlib-bin || exit 1
      python3 -m pip wheel -q --no-deps -w .whl python_speech_features==0.6 || exit 1
      ls -la .whl; exit 0 ;;
    --prepare-inputs)
      PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
      "$PY" benchmarks/gpu_check.py --prepare_inputs .gpu_inputs; exit $? ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) PYARGS+=("$1") ;;
  esac
  shift
done

SMI=${NVIDIA_SMI:-nvidia-smi}
if [ $DRY = 0 ] && ! { command -v "$SMI" >/dev/null 2>&1 && "$SMI" -L 2>/dev/null | grep -q "GPU"; }; then
  echo "gpu_check: no NVIDIA GPU found (nvidia-smi lists none); nothing to check"
  exit 0
fi

# ------------------------------------------------------------------ 1. Python with a CUDA torch (<= 2 min)
has_cuda_torch() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
# import name -> pip name of what the checks import
MODS="numpy:numpy scipy:scipy cv2:opencv-python-headless skimage:scikit-image av:av \
python_speech_features:python_speech_features dlib:dlib-bin tqdm:tqdm pytest:pytest"
missing_pkgs() {
  local out=()
  for pair in $MODS; do "$1" -c "import ${pair%%:*}" 2>/dev/null || out+=("${pair##*:}"); done
  echo "${out[@]:-}"
}
if [ $DRY = 1 ]; then
  PY=.venv/bin/python
  [ -x "$PY" ] || { echo "gpu_check: no .venv; run 'bash setup.sh' first" >&2; exit 1; }
  log "dry run on CPU with $PY (no installs)"
elif [ -x .venv/bin/python ] && has_cuda_torch .venv/bin/python; then
  PY=.venv/bin/python
  log "using .venv ($($PY -c 'import torch; print(torch.__version__)'))"
elif has_cuda_torch "${PYTHON:-python3}"; then
  # not a venv on top of it: that python may itself be a venv, whose packages a nested venv would not see
  PY=$(command -v "${PYTHON:-python3}")
  export PYTHONPATH="$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}"
  need=$(missing_pkgs "$PY")
  if [ -n "$need" ]; then
    # --no-deps: never let pip replace the image's torch or numpy
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
      log "installing into .gpu-site/ from .whl/ (offline): $need"
      timeout 120 "$PY" -m pip install -q --no-index --no-deps --upgrade --target .gpu-site .whl/*.whl \
        || log "pip from .whl failed"
    else
      log "installing into .gpu-site/ from the registry: $need"
      timeout 120 "$PY" -m pip install -q --no-deps --upgrade --target .gpu-site $need || log "pip install failed"
    fi
  fi
  log "using $PY ($($PY -c 'import torch; print(torch.__version__)')) + .gpu-site/"
else
  log "no CUDA torch here yet: bash setup.sh (CUDA build from the registry)"
  if [ -x .venv/bin/python ]; then
    echo "gpu_check: .venv has a torch without CUDA; reinstall it with LAWDNET_TORCH=torch==X.Y.Z bash setup.sh" >&2
    exit 1
  fi
  timeout 300 bash setup.sh || { echo "gpu_check: setup.sh failed (or took over 5 min)" >&2; exit 1; }
  PY=.venv/bin/python
  has_cuda_torch "$PY" || { echo "gpu_check: the installed torch does not see the GPU" >&2; exit 1; }
fi
need=$(missing_pkgs "$PY")
[ -z "$need" ] || log "still missing (their parts will fail or be skipped): $need"

# ------------------------------------------------------------------ 2. the CUDA tests
SEL="(cuda or gpu) and not gpu_check"
if [ $DRY = 1 ]; then
  log "CUDA tests (collected only on CPU): -k '$SEL'"
  "$PY" -m pytest -q --co -k "$SEL" --continue-on-collection-errors -p no:cacheprovider tests 2>&1 | tail -n 3 >&2
else
  log "CUDA tests: -k '$SEL'"
  timeout 120 "$PY" -m pytest -q -rfEs -k "$SEL" --continue-on-collection-errors -p no:cacheprovider tests \
    2>&1 | tail -n 25 >&2
fi

# ------------------------------------------------------------------ 3. the table
LEFT=$((TOTAL_S - (SECONDS - T0) - 15))
[ $LEFT -gt 60 ] || LEFT=60
log "measurements ($LEFT s)"
DRYARG=()
[ $DRY = 1 ] && DRYARG=(--cpu_dry_run)
INPUTS=()
[ -d .gpu_inputs ] && INPUTS=(--inputs .gpu_inputs)
PYTHONUNBUFFERED=1 timeout $((LEFT + 10)) "$PY" benchmarks/gpu_check.py "${DRYARG[@]}" "${INPUTS[@]}" \
  --deadline_s "$LEFT" "${PYARGS[@]}"
rc=$?
log "done (exit $rc)"
exit $rc
