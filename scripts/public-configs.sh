#!/usr/bin/env bash
# The public-model acceptance table (docs/model.md "Public models checked"): every config.json in
# tests/model/public_configs is planned on its real sizes (`tsp plan --model`) and, shrunk to
# h 64 with its family, RoPE, window and dtype fields kept, trained for 2 steps (`tsp train
# --config`). Prints one Markdown row per file.
#   scripts/public-configs.sh [path/to/tsp]     (default build/release/src/tsp/cli/tsp)
set -u
cd "$(dirname "$0")/.."
TSP=${1:-build/release/src/tsp/cli/tsp}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "| config | tsp plan --seq 4096 (8 x H100) | tsp train --config (tiny) | loss at step 2 |"
echo "|---|---|---|---|"
for f in tests/model/public_configs/*.json; do
  name=$(basename "$f" .json)
  "$TSP" plan --model "$f" --seq 4096 --cluster h100 --devices 8 --search --top 3 > "$OUT/plan" 2>&1
  plan=$?
  python3 - "$f" "$OUT/tiny.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
mha = j.get("num_key_value_heads", j["num_attention_heads"]) == j["num_attention_heads"]
j.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=4 if mha else 2, head_dim=16, vocab_size=320)  # V >= 259: byte data
if j.get("model_type") == "mistral" and j.get("sliding_window"):
    j["sliding_window"] = min(j["sliding_window"], 8)
for k in ("bos_token_id", "eos_token_id", "pad_token_id"):  # ids of the real vocabulary
    j.pop(k, None)
json.dump(j, open(sys.argv[2], "w"), indent=2)
PY
  OMP_NUM_THREADS=1 "$TSP" train --config "$OUT/tiny.json" --data fortunes --steps 2 --batch 2 \
      --seq 32 --warmup 1 --eval-batches 1 > "$OUT/train" 2>&1
  train=$?
  p=$([ $plan = 0 ] && grep -m1 '^Best:' "$OUT/plan" | cut -d, -f1,3,4 || echo "FAILED: $(tail -1 "$OUT/plan")")
  t=$([ $train = 0 ] && grep -m1 '^model:' "$OUT/train" | sed 's/^model: //; s/ (--dtype.*//' || echo "FAILED: $(tail -1 "$OUT/train")")
  echo "| $name | $p | $t | $(grep -m1 'step 2/2' "$OUT/train" | grep -oE 'loss [0-9.]+') |"
done
