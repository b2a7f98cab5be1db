#!/usr/bin/env bash
# The MahaSent-ST ablation of docs/accuracy.md, as run on 2026-12-02 (2-core Intel Xeon, avx2/avx512_vnni/amx,
# shared with other jobs). Usage: run.sh <out dir> <name>   (dense first; the pruned rows start from its model)
set -euo pipefail
OUT=${1:?out dir}; NAME=${2:?run name}
D=${BLOCKPRUNE_MAHASENT:-$(cd "$(dirname "$0")/../../../.." && pwd)/shared/data/mahasent-st}
DATA=(data=files data.train_file=$D/MahaSent_ST_Train.csv data.val_file=$D/MahaSent_ST_Val.csv
      data.test_file=$D/MahaSent_ST_Test.csv data.text_column=marathi_text data.label_column=label
      "data.limit={train: 1500, val: 300}")
COMMON=(trainer=cpu module.lr=1e-4 module.warmup_ratio=0.06 callbacks=no_carbon logger=csv bench.enabled=false)
# The dense job saves its model after its own test; the same weights taken from its best checkpoint
# (see README of this folder) let the pruned rows start while that test runs: INIT=<folder>.
PRUNED=(init_from=${INIT:-$OUT/dense/model} "data.limit={train: 1500, val: 100}" prune=block prune.sparsity=0.5 prune.attention_block=head distill=on
        save_model=false trainer.max_epochs=1)
case $NAME in
  dense)         ARGS=(trainer.max_epochs=2) ;;
  kd_logits)     ARGS=("${PRUNED[@]}") ;;                                   # today's recipe (logits-only KD)
  kd_hidden)     ARGS=("${PRUNED[@]}" distill.hidden_weight=1.0) ;;          # + hidden-state distillation
  kd_global)     ARGS=("${PRUNED[@]}" prune.allocation=global) ;;           # + global allocation
  kd_long)       ARGS=("${PRUNED[@]}" trainer.max_epochs=2 prune.hold=0.5) ;; # longer schedule, longer hold
  kd_seed1)      ARGS=("${PRUNED[@]}" seed=1 data.seed=42) ;;                 # today's recipe again, another seed (same data)
  kd_hidden10)   ARGS=("${PRUNED[@]}" distill.hidden_weight=10.0) ;;
  kd_aug)        ARGS=("${PRUNED[@]}" distill.augment.copies=1) ;;          # + one perturbed copy of each text
  kd_unlab)      ARGS=("${PRUNED[@]}" "distill.unlabelled_files=[$D/MahaSent_ST_Train.csv]") ;; # + the 12,000 training texts, unlabelled
  kd_long3)      ARGS=("${PRUNED[@]}" trainer.max_epochs=3 prune.hold=0.5) ;; # longer still
  kd_all)        ARGS=("${PRUNED[@]}" trainer.max_epochs=2 prune.hold=0.5 distill.hidden_weight=1.0 prune.allocation=global) ;;
  *) echo "unknown run $NAME" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/../../.."
exec .venv/bin/python train.py "${DATA[@]}" "${COMMON[@]}" "${ARGS[@]}" task_name=ablation_$NAME hydra.run.dir=$OUT/$NAME
