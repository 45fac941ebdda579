#!/usr/bin/env bash
# One-command set-up: system tools (ffmpeg, espeak-ng, dlib's 68-point predictor) and a Python venv in .venv.
# CPU machines get the CPU torch wheel; machines with an NVIDIA GPU get the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  command -v ffmpeg >/dev/null || need+=(ffmpeg)
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  [ -f /usr/share/dlib/shape_predictor_68_face_landmarks.dat ] || need+=(libdlib-data)
  command -v chromium >/dev/null || need+=(chromium)              # the live page's browser test
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  if [ ${#need[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
else
  echo "[setup] not root or no apt-get: install ffmpeg, espeak-ng and libdlib-data yourself (or 'pip install face_recognition_models'); chromium + chromium-driver for the browser test"
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null
if [ -n "${LAWDNET_TORCH:-}" ]; then
  TORCH_SPEC="$LAWDNET_TORCH"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  TORCH_SPEC="torch==2.14.1"      # CUDA build
else
  TORCH_SPEC="torch==2.13.0"      # CPU build (local wheel on our machines)
fi
echo "[setup] installing $TORCH_SPEC and requirements.txt into .venv"
$PIP install -q "$TORCH_SPEC"
$PIP install -q -r requirements.txt "$TORCH_SPEC"
.venv/bin/python -c "import torch, cv2, dlib, av; print('[setup] ok: torch', torch.__version__, 'cuda', torch.cuda.is_available())"
