#!/usr/bin/env bash
# Coarse-to-fine LawDNet training: frame_64 -> frame_128 -> frame_256 -> clip_288, each stage initialised from
# the previous stage's final.pth. Re-running the same command resumes: finished stages are skipped and an
# interrupted stage continues from its newest checkpoint.
#
#   bash train_sequence_distributed.sh NAME --train_data DATA/training_json.json --vgg_path vgg19.pth \
#        --syncnet_path syncnet.pth [any train_sequence_distributed.py flag, applied to every stage]
#
# Environment:
#   NPROC        processes (GPUs) per node; default: number of visible GPUs, else 1
#   NNODES       nodes (default 1); NODE_RANK (default 0)
#   MASTER_ADDR / MASTER_PORT   static rendezvous for NNODES > 1 (one node's address, a free port)
#   RDZV_ENDPOINT (host:port) and RDZV_ID   elastic c10d rendezvous instead of MASTER_ADDR/PORT
#   STAGES       stages to run (default "frame_64 frame_128 frame_256 clip_288"; "tiny tiny_clip" for a demo)
#   RESULT_ROOT  results root (default ./output/training_model_weight); PYTHON (default .venv/bin/python)
# Single node without MASTER_ADDR/RDZV_ENDPOINT uses torchrun --standalone (a free port is picked).
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2
fi
NAME=$1; shift
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
STAGES=${STAGES:-"frame_64 frame_128 frame_256 clip_288"}
RESULT_ROOT=${RESULT_ROOT:-./output/training_model_weight}
# A --result_root among the flags wins over the environment (it decides where each stage's final.pth is).
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --result_root) RESULT_ROOT=${args[$((i + 1))]:?--result_root needs a value} ;;
    --result_root=*) RESULT_ROOT=${args[$i]#--result_root=} ;;
  esac
done
if [ -z "${NPROC:-}" ]; then
  NPROC=$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

launch=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC" --nnodes "$NNODES")
if [ -n "${RDZV_ENDPOINT:-}" ]; then
  launch+=(--rdzv_backend c10d --rdzv_endpoint "$RDZV_ENDPOINT" --rdzv_id "${RDZV_ID:-$NAME}")
elif [ -n "${MASTER_ADDR:-}" ]; then
  launch+=(--node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:?set MASTER_PORT}")
elif [ "$NNODES" = 1 ]; then
  launch+=(--standalone)
else
  echo "error: NNODES=$NNODES needs MASTER_ADDR and MASTER_PORT, or RDZV_ENDPOINT" >&2; exit 2
fi

prev=""
for stage in $STAGES; do
  out="$RESULT_ROOT/$NAME/$stage"
  if [ -f "$out/final.pth" ]; then
    echo "[sequence] $stage already finished ($out/final.pth), skipping"
  else
    init=()
    if [ -n "$prev" ]; then init=(--init_from "$RESULT_ROOT/$NAME/$prev/final.pth"); fi
    echo "[sequence] $stage: ${launch[*]} train_sequence_distributed.py --stage $stage ..."
    "${launch[@]}" train_sequence_distributed.py --stage "$stage" --name "$NAME" --result_root "$RESULT_ROOT" \
      --resume "${init[@]}" "$@"
  fi
  prev=$stage
done
echo "[sequence] done: $RESULT_ROOT/$NAME/${STAGES##* }/final.pth"
