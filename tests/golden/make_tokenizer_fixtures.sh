#!/usr/bin/env bash
# Regenerates the tokenizer golden fixtures in tests/golden/tokenizer/ from llama.cpp
# (the oracle), through tools/llamacpp/dump_tokens.cpp. Needs the llama.cpp build
# (tools/llamacpp/build.sh, run by compile.sh) and, for the model fixtures, the GGUFs
# from scripts/fetch_models.sh; a model that is absent is skipped with a notice.
#
# Fixtures (ids are space-separated, one line per input; bytes are hex):
#   spm_vocab.tsv           synthetic SentencePiece vocab (make_spm_vocab.py, no download)
#   <v>_meta.txt            n_vocab, bos/eos/eot, add_bos/add_eos, EOG ids, non-normal
#                           token attributes; for models also "wikitext_whole N HASH":
#                           the token count and FNV-1a-64 hash (ids as little-endian
#                           int32) of wiki.test.raw tokenized as one text
#   <v>_hard.txt            hard_set.txt cases: name, mode (00 = no add/parse special,
#                           11 = both), ids, then llama_detokenize of those ids as
#                           (remove_special, unparse_special) = 00, 01, 10; "=" means
#                           "same as the input text" (first) or "same as the first"
#   <v>_pieces.txt          id, llama_token_to_piece(special=false), (special=true)
#                           for every Nth id and every non-normal token
#   smollm2_wikitext.ids    wiki.test.raw split after each '\n' (so each line keeps
#                           its "\r\n"), each line tokenized alone without specials;
#                           every line also round-trips through llama_detokenize
#                           (dump_tokens fails otherwise)
#   qwen2_wikitext300.ids   the same for the first 300 lines with Qwen2.5's vocab
#   gemma3_wikitext300.ids  the same with Gemma 3's (262k SentencePiece, no space prefix)
#   <v>_as_<pre>_hard.txt, <v>_as_<pre>_wikitext100.ids
#                           a real vocab run through another pre-tokenizer family
#                           (tokenizer.ggml.pre replaced in a metadata-only copy):
#                           SmolLM2's as "gpt-2" and "default", Qwen2's as
#                           "llama-bpe"; these clean spaces when detokenizing, so
#                           their lines need not round-trip
#   chat_templates.txt      chat_inputs.txt rendered by llama_chat_apply_template:
#                           template, message list, add_ass, hex output or ERR
# <v> is spm (defaults: BOS, space prefix), spm_noprefix (EOS, no prefix), smollm2, qwen2, gemma3.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/tests/golden/tokenizer"
# DUMP_TOKENS_BIN: an already compiled dump_tokens (skips compile.sh).
bin="${DUMP_TOKENS_BIN:-$("$root/tools/llamacpp/compile.sh" dump_tokens | tail -n 1)}"
cache="${KESTREL_CACHE:-$HOME/.cache/kestrel}"
wiki="${KESTREL_WIKITEXT:-$root/../shared/data/wikitext-2-raw/wiki.test.raw}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 "$out/make_spm_vocab.py"
"$bin" write-spm "$out/spm_vocab.tsv" "$tmp/spm.gguf"
"$bin" write-spm "$out/spm_vocab.tsv" "$tmp/spm_noprefix.gguf" noprefix
for v in spm spm_noprefix; do
  "$bin" meta "$tmp/$v.gguf" > "$out/${v}_meta.txt"
  "$bin" hard "$tmp/$v.gguf" "$out/hard_set.txt" > "$out/${v}_hard.txt"
  "$bin" pieces "$tmp/$v.gguf" 1 > "$out/${v}_pieces.txt"
done

model_fixtures() {  # name gguf wiki_lines(0 = all) ids_file piece_stride
  local name="$1" gguf="$2" lines="$3" ids="$4" stride="$5"
  if [ ! -f "$gguf" ]; then
    echo "skipping $name: $gguf not found (scripts/fetch_models.sh)" >&2
    return
  fi
  echo "dumping $name" >&2
  "$bin" meta "$gguf" > "$out/${name}_meta.txt"
  echo "wikitext_whole $("$bin" whole "$gguf" "$wiki")" >> "$out/${name}_meta.txt"
  "$bin" lines "$gguf" "$wiki" "$lines" check > "$out/$ids"
  "$bin" hard "$gguf" "$out/hard_set.txt" > "$out/${name}_hard.txt"
  "$bin" pieces "$gguf" "$stride" > "$out/${name}_pieces.txt"
}
retag_fixtures() {  # name gguf pre
  local name="$1" gguf="$2" pre="$3"
  [ -f "$gguf" ] || return 0
  local tag="${name}_as_$(echo "$pre" | tr -c 'a-z0-9\n' '_')"
  "$bin" retag "$gguf" "$pre" "$tmp/$tag.gguf"
  "$bin" hard "$tmp/$tag.gguf" "$out/hard_set.txt" > "$out/${tag}_hard.txt"
  "$bin" lines "$tmp/$tag.gguf" "$wiki" 100 > "$out/${tag}_wikitext100.ids"
}
smollm2="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
qwen2="$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
gemma3="$cache/models/gemma-3-270m-q4_k_m.gguf"
model_fixtures smollm2 "$smollm2" 0 smollm2_wikitext.ids 53
model_fixtures qwen2 "$qwen2" 300 qwen2_wikitext300.ids 211
model_fixtures gemma3 "$gemma3" 300 gemma3_wikitext300.ids 1021
retag_fixtures smollm2 "$smollm2" gpt-2
retag_fixtures smollm2 "$smollm2" default
retag_fixtures qwen2 "$qwen2" llama-bpe

"$bin" chat "$out/chat_inputs.txt" > "$out/chat_templates.txt"
du -ch "$out"/* | tail -n 1 >&2
