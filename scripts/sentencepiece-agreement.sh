#!/usr/bin/env bash
# `tsp tokenizer` on a SentencePiece tokenizer.model against Debian's spm_encode/spm_decode: trains a
# tiny BPE model with byte fallback (spm_train) on fortunes, then compares ids and round trips line by
# line. Both sides are libsentencepiece: this checks tsp's wiring (ids, BOS, decode), not the library.
#   scripts/sentencepiece-agreement.sh TSP_BINARY WORK_DIR [TEST_LINES]   exit 0 agree, 1 differ, 77 skipped
# TEST_LINES (default 300) text lines are compared, plus three with unseen characters. Each line
# starts tsp three times: the sanitizer build passes fewer lines (its startup costs ~0.3 s a process
# there, 300 lines ran past the test's timeout) and checks memory errors, the release build the
# agreement itself.
set -euo pipefail
tsp=$1 work=$2 test_lines=${3:-300}
for tool in spm_train spm_encode spm_decode; do
  command -v $tool >/dev/null || { echo "SKIPPED: $tool not installed (Debian package sentencepiece)"; exit 77; }
done
[ -d /usr/share/games/fortunes ] || { echo "SKIPPED: no fortunes corpus"; exit 77; }
mkdir -p "$work/model"
# The first 20000 text lines train; the next TEST_LINES (and lines with unseen characters: byte
# fallback) test.
awk -v last=$((20000 + test_lines)) '!/^%$/ && !/^[[:space:]]*$/ { n++; if (n <= 20000) print > "'"$work/train.txt"'"; else if (n <= last) print > "'"$work/test.txt"'" }' \
  $(ls /usr/share/games/fortunes/* | grep -v '\.dat$' | grep -v '\.u8$')
printf '%s\n' 'Ünïcödé 中文 🤖 emoji' '  leading spaces and	tab' 'trailing   ' >> "$work/test.txt"
spm_train --input="$work/train.txt" --model_prefix="$work/model/tokenizer" --vocab_size=2000 --model_type=bpe \
  --byte_fallback=true --character_coverage=0.9995 --minloglevel=2 >/dev/null 2>&1
echo '{"add_bos_token": true, "add_eos_token": false}' > "$work/model/tokenizer_config.json"
spm_encode --model="$work/model/tokenizer.model" --output_format=id < "$work/test.txt" > "$work/expected.txt"
lines=0 bad=0 trips=0
while IFS= read -r line && IFS= read -r want <&3; do
  lines=$((lines + 1))
  got=$("$tsp" tokenizer encode --tokenizer "$work/model" --no-special --text "$line" </dev/null)
  if [ "$got" != "$want" ]; then
    bad=$((bad + 1)); [ $bad -le 3 ] && echo "MISMATCH line $lines: spm_encode [$want] tsp [$got]"
  fi
  with_bos=$("$tsp" tokenizer encode --tokenizer "$work/model" --text "$line" </dev/null)
  [ "${with_bos%% *}" = 1 ] || { bad=$((bad + 1)); echo "line $lines: no BOS (1) first: $with_bos"; }
  back=$("$tsp" tokenizer decode --tokenizer "$work/model" --skip-special --ids "$with_bos" </dev/null)
  ref=$(printf '%s\n' "$want" | spm_decode --model="$work/model/tokenizer.model" --input_format=id)
  if [ "$back" = "$ref" ]; then trips=$((trips + 1)); else bad=$((bad + 1)); echo "DECODE line $lines: [$back] vs spm_decode [$ref]"; fi
done < "$work/test.txt" 3< "$work/expected.txt"
echo "sentencepiece: $lines lines, $(wc -c < "$work/test.txt") bytes: $bad differences; decode == spm_decode on $trips/$lines"
[ $bad -eq 0 ] && echo PASSED || { echo FAILED; exit 1; }
