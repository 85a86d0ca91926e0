#!/bin/bash
# Copy a transfer study's finished records into the docs, where results-transfer.md cites them:
#   tools/transfer_records.sh [runs/transfer-b [docs/runs/transfer-b]]
# transfer.json/.md/.png; each probe cell's probe.json; each trained cell whose ten-crop test
# is written: its config, metrics.jsonl, train.log, version.json and both tests' eval.json
# (not its checkpoints); and one holdout.json, which must be the same for every cell.
# DOCS is made afresh: records of cells the study no longer holds (a study redone from new
# weights) do not stay beside the new ones.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-runs/transfer-b}
dst=${2:-docs/runs/transfer-b}
python=${PYTHON:-.venv/bin/python}
[ -f "$src/transfer.json" ] || { echo "no $src/transfer.json: not a transfer study" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst"
# transfer.md from transfer.json (a study started before transfer.md existed has none)
"$python" -c 'import json, sys
from alexnet.studies.transfer_table import table_markdown
print(table_markdown(json.load(open(sys.argv[1]))), end="")' "$src/transfer.json" >"$dst/transfer.md"
cp "$src/transfer.json" "$src/transfer.png" "$dst/"
holdout=""
for cell in "$src"/probe/n-*/seed-*; do
  [ -f "$cell/probe.json" ] || continue
  mkdir -p "$dst/${cell#"$src"/}" && cp "$cell/probe.json" "$dst/${cell#"$src"/}/"
done
for cell in "$src"/{scratch,fc8,all}/n-*/seed-*; do
  [ -f "$cell/test-val-ten-crop/eval.json" ] || continue
  d=$dst/${cell#"$src"/}
  mkdir -p "$d/test-val-center" "$d/test-val-ten-crop"
  cp "$cell"/{config.yaml,metrics.jsonl,train.log,version.json} "$d/"
  cp "$cell/test-val-center/eval.json" "$d/test-val-center/"
  cp "$cell/test-val-ten-crop/eval.json" "$d/test-val-ten-crop/"
  if [ -z "$holdout" ]; then
    holdout=$cell/holdout.json
  elif ! cmp -s "$cell/holdout.json" "$holdout"; then
    echo "holdout.json of $cell differs from $holdout's" >&2
    exit 1
  fi
done
[ -z "$holdout" ] || cp "$holdout" "$dst/holdout.json"
du -sh "$dst"
