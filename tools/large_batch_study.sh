#!/usr/bin/env bash
# The large-batch study of docs/results-large-batch.md: the four-layer CIFAR net (configs/cifar4.yaml)
# on Fashion-MNIST at 32x32, 10 epochs, 5,000 training images held out to validate (the test
# images looked at once, at the end, --test): global batch 128 against 2,048 (16
# micro-batches of 128) with (a) the linear scaling rule, (b) + 2 epochs of warmup, (c) LARS
# + warmup, its rate at batch 2,048 chosen on the held-out images of seed 0 among 0.25, 1, 4
# and 16 (a sixteenth of each at batch 128, scaled linearly; the warmup rises from there); a
# rate that diverges is out. Two seeds. About 45 minutes of a 2-core CPU; each run resumes if
# stopped (--auto-resume). Then: python tools/large_batch_summary.py RUNS --out docs/runs/large-batch
#
#   bash tools/large_batch_study.sh [RUNS]     # runs in RUNS (default runs/large-batch)
set -euo pipefail
RUNS=${1:-runs/large-batch}
STORE=${STORE:-data/fashion-mnist-32}
ALEXNET=${ALEXNET:-alexnet}
test -d "$STORE" || $ALEXNET data prepare --source fashion-mnist --size 32 --out "$STORE"
common=(--config configs/cifar4.yaml --test --auto-resume --set "data.store=$STORE"
        --set data.holdout=5000 --set run.epochs=10 --set run.log_every_steps=1000)
big=(--set optim.batch_size=2048 --set optim.accumulate=16 --set optim.lr_scaling=linear)
train() { ALEXNET_PROGRESS=0 $ALEXNET train "${common[@]}" --out "$RUNS/$1" "${@:2}"; }
for seed in 0 1; do
    s=(--set "run.seed=$seed")
    train "b128-s$seed" "${s[@]}"
    train "b2048-linear-s$seed" "${s[@]}" "${big[@]}"
    train "b2048-warmup-s$seed" "${s[@]}" "${big[@]}" --set schedule.warmup_epochs=2
done
base() { python3 -c "print($1 / 16)"; }  # the rate at batch 128 that scales to $1
for lr in 0.25 1 4 16; do  # LARS's rate, chosen on the held-out images of seed 0
    train "b2048-lars-lr$lr-s0" --set run.seed=0 "${big[@]}" --set schedule.warmup_epochs=2 \
        --set optim.name=lars --set "optim.lr=$(base $lr)" || echo "rate $lr diverged"
done
best=$(python3 - "$RUNS" <<'PY'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
def held_out(lr):  # a run that diverged before its last epoch is out
    text = (runs / f"b2048-lars-lr{lr}-s0" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in text]
    return min(r["val_top1_error"] for r in rows) if len(rows) == 10 else float("inf")
print(min(("0.25", "1", "4", "16"), key=held_out))
PY
)
echo "LARS rate chosen on the held-out images: $best"
train "b2048-lars-lr$best-s1" --set run.seed=1 "${big[@]}" --set schedule.warmup_epochs=2 \
    --set optim.name=lars --set "optim.lr=$(base "$best")"
