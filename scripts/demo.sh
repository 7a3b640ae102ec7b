#!/usr/bin/env bash
# `make demo`: from real English text to a trained model and its generations, on 2 cores in a few
# minutes. Every step is a plain `tsp` command, printed before it runs, so it can be copied.
#
#   1. corpus     Debian's fortunes (one document per fortune) and the King James Bible (one per
#                 chapter, from bible-kjv), written under build/demo/corpus/
#   2. tokenizer  a 4096-piece SentencePiece BPE vocabulary trained on that text (tsp tokenizer train)
#   3. shards     the text tokenized into token shards with a manifest, 2% of the documents held
#                 out for validation (tsp data prepare)
#   4. one rank   a 5.5 M-parameter Llama (5x the `tiny` preset) trained on one process (both cores)
#   5. TSP D=2    the same run with TSP over two ranks (one core each): every rank holds half of
#                 every weight and half of every sequence; same losses, half the memory per rank
#   6. results    the two runs side by side, the held-out loss, the loss chart, and text generated
#                 with the trained tokenizer (the checkpoint carries it)
set -euo pipefail
cd "$(dirname "$0")/.."

tsp=${TSP_BIN:-./build/release/src/tsp/cli/tsp}
demo=${DEMO_DIR:-build/demo}
steps=${DEMO_STEPS:-150}
# Open MPI refuses root without these (the demo runs on the local machine only).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI refuses more ranks than cores unless told; a 1-core machine still runs the demo.
mpirun_2=(mpirun -np 2)
[ "$(nproc)" -lt 2 ] && mpirun_2+=(--oversubscribe)

run() { printf '+ %s\n' "$*"; "$@"; }
step() { printf '\n== tsp demo %s ==\n' "$*"; }

start=$(date +%s)
rm -rf "$demo" && mkdir -p "$demo/corpus/fortunes"

step "1/6: the corpus (fortunes + the King James Bible, real English from Debian packages)"
# The fortune files themselves, not the strfile indexes (*.dat), the UTF-8 links (*.u8) or the
# offensive set (off/).
for f in /usr/share/games/fortunes/*; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  case "$f" in *.dat | *.u8) ;; *) cp "$f" "$demo/corpus/fortunes/" ;; esac
done
# bible-kjv prints one verse per line as "Ge1:1 In the beginning ..."; a "%" line before each
# chapter's first verse makes chapters documents in the same format as the fortunes.
bible -f 'Gen1:1-Rev22:21' | awk '$1 ~ /:1$/ { print "%" } { sub(/^[^ ]+ /, ""); print }' \
  > "$demo/corpus/kjv.txt"
echo "corpus: $(ls "$demo/corpus/fortunes" | wc -l) fortune files, $(du -sh "$demo/corpus" | cut -f1) of text"

step "2/6: a SentencePiece BPE vocabulary trained on it"
run "$tsp" tokenizer train "$demo/corpus" --doc-sep percent --type bpe --vocab-size 4096 \
  --out "$demo/tokenizer"

step "3/6: token shards with a manifest (2% of the documents held out)"
run "$tsp" data prepare "$demo/corpus" --doc-sep percent --tokenizer "$demo/tokenizer" \
  --val-fraction 0.02 --out "$demo/data" --progress lines

# The model: the tiny preset's shape, twice as wide, with the trained vocabulary (5.5 M parameters).
cat > "$demo/model.json" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
  "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 64,
  "vocab_size": 4096, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
  "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"
}
EOF
train_args=(train --config "$demo/model.json" --data "$demo/data" --steps "$steps" --batch 16
            --seq 128 --lr 3e-3 --min-lr 3e-4 --warmup 15 --eval-every 50 --eval-batches 8
            --log-every 25)

step "4/6: one rank (OMP_NUM_THREADS=2: both cores)"
OMP_NUM_THREADS=2 run "$tsp" "${train_args[@]}" --checkpoint-dir "$demo/single" \
  --metrics "$demo/single.jsonl"

step "5/6: TSP over 2 ranks (mpirun -np 2, one core per rank)"
OMP_NUM_THREADS=1 run "${mpirun_2[@]}" "$tsp" "${train_args[@]}" --layout tsp --tsp 2 \
  --checkpoint-dir "$demo/tsp2" --metrics "$demo/tsp2.jsonl"

step "6/6: side by side, held-out loss, loss chart, generation"
run "$tsp" compare single="$demo/single.jsonl" tsp2="$demo/tsp2.jsonl"
run "$tsp" eval --checkpoint "$demo/tsp2" --batches 16
run "$tsp" plot single="$demo/single.jsonl" tsp2="$demo/tsp2.jsonl" --svg "$demo/loss.svg"
for prompt in "The best way to" "And the LORD said unto"; do
  run "$tsp" generate --checkpoint "$demo/tsp2" --prompt "$prompt" --max-new-tokens 60 --seed 1
done
echo
echo "demo: done in $(( $(date +%s) - start )) s; loss chart $demo/loss.svg, checkpoints (config," \
     "weights, tokenizer) $demo/single and $demo/tsp2"
