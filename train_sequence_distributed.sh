#!/usr/bin/env bash
# Coarse-to-fine LawDNet training: frame_64 -> frame_128 -> frame_256 -> clip_288, each stage initialised from
# the previous stage's final.pth. Re-running the same command resumes: finished stages are skipped and an
# interrupted stage continues from its newest checkpoint. --overwrite starts every stage over instead.
#
#   bash train_sequence_distributed.sh NAME --train_data DATA/training_json.json --vgg_path vgg19.pth \
#        --syncnet_path syncnet.pth [any train_sequence_distributed.py flag, applied to every stage]
#
# Environment:
#   NPROC        processes (GPUs) per node; default: number of visible GPUs, else 1
#   NNODES       nodes (default 1); NODE_RANK (default 0)
#   MASTER_ADDR / MASTER_PORT   static rendezvous (one node's address, a free port; MASTER_PORT alone = this node)
#   RDZV_ENDPOINT (host:port) and RDZV_ID   elastic c10d rendezvous instead of MASTER_ADDR/PORT
#   STAGES       stages to run (default "frame_64 frame_128 frame_256 clip_288"; "tiny tiny_clip" for a demo)
#   RESULT_ROOT  results root (default ./output/training_model_weight); PYTHON (default .venv/bin/python)
# One process on one node runs plain python; otherwise torchrun (through training/launch.py, which reports
# failures in one line), with --standalone (a free port is picked) unless MASTER_PORT or RDZV_ENDPOINT is set.
set -euo pipefail
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2
fi
fail() { echo "error: $*" >&2; exit 2; }
NAME=$1; shift
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
STAGES=${STAGES:-"frame_64 frame_128 frame_256 clip_288"}
RESULT_ROOT=${RESULT_ROOT:-./output/training_model_weight}
# A --result_root among the flags wins over the environment (it decides where each stage's final.pth is).
args=("$@")
overwrite=0
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --result_root) [ $((i + 1)) -lt ${#args[@]} ] || fail "--result_root needs a value"
                   RESULT_ROOT=${args[$((i + 1))]} ;;
    --result_root=*) RESULT_ROOT=${args[$i]#--result_root=} ;;
    --overwrite) overwrite=1 ;;
    --resume) fail "the sequence always resumes; pass --overwrite to start every stage over instead" ;;
  esac
done
if [ -z "${NPROC:-}" ]; then
  NPROC=$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))') || fail "cannot run $PYTHON"
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
for v in NPROC NNODES; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "$v must be a positive whole number, got '${!v}'"
done
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NNODES" ] || fail "NODE_RANK must be 0..$((NNODES - 1)), got '$NODE_RANK'"
if [ -n "${MASTER_PORT:-}" ]; then
  [[ "$MASTER_PORT" =~ ^[0-9]+$ ]] && [ "$MASTER_PORT" -ge 1 ] && [ "$MASTER_PORT" -le 65535 ] \
    || fail "MASTER_PORT must be a port number (1-65535), got '$MASTER_PORT'"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

launch=("$PYTHON" -m training.launch --nproc_per_node "$NPROC" --nnodes "$NNODES")
if [ -n "${RDZV_ENDPOINT:-}" ]; then
  launch+=(--rdzv_backend c10d --rdzv_endpoint "$RDZV_ENDPOINT" --rdzv_id "${RDZV_ID:-$NAME}")
elif [ -n "${MASTER_ADDR:-}" ] || [ -n "${MASTER_PORT:-}" ]; then
  [ "$NNODES" = 1 ] || [ -n "${MASTER_ADDR:-}" ] || fail "NNODES=$NNODES needs MASTER_ADDR (one node's address)"
  [ -n "${MASTER_PORT:-}" ] || fail "MASTER_ADDR needs MASTER_PORT (a free port on that node)"
  launch+=(--node_rank "$NODE_RANK" --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "$MASTER_PORT")
elif [ "$NNODES" = 1 ]; then
  if [ "$NPROC" = 1 ]; then launch=("$PYTHON"); else launch+=(--standalone); fi
else
  fail "NNODES=$NNODES needs MASTER_ADDR and MASTER_PORT, or RDZV_ENDPOINT"
fi

continue=(--resume)
if [ "$overwrite" = 1 ]; then continue=(); fi
prev=""
for stage in $STAGES; do
  out="$RESULT_ROOT/$NAME/$stage"
  if [ "$overwrite" = 0 ] && [ -f "$out/final.pth" ]; then
    echo "[sequence] $stage already finished ($out/final.pth), skipping"
  else
    init=()
    if [ -n "$prev" ]; then init=(--init_from "$RESULT_ROOT/$NAME/$prev/final.pth"); fi
    echo "[sequence] $stage: ${launch[*]} train_sequence_distributed.py --stage $stage ..."
    "${launch[@]}" train_sequence_distributed.py --stage "$stage" --name "$NAME" --result_root "$RESULT_ROOT" \
      "${continue[@]}" "${init[@]}" "$@"
  fi
  prev=$stage
done
echo "[sequence] done: $RESULT_ROOT/$NAME/${STAGES##* }/final.pth"
