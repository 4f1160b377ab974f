#!/usr/bin/env bash
# make lint: the rules that keep baton's layers apart and its C safe, checked on
# the source text (docs/architecture.md explains them):
#  1. a folder of src/ includes only folders below it in the layer table (a
#     subfolder counts as its parent; main.c is on top);
#  2. `bt_openai_` names (code or comments) only in files about OpenAI, which have
#     `openai` in their path; everything else refers to OpenAI pieces by neutral
#     names (bt_fe_openai, bt_adapter_openai);
#  3. no OpenAI wire strings in the format-neutral middle (exec, http, route, gate);
#  4. no sprintf / vsprintf / strcpy / strcat / atoi / gets.
# Prints each violation as file:line: what, then `lint: N problems` and exits 1,
# or `lint: ok`.
set -uo pipefail
cd "$(dirname "$0")/.."

# The layers, lowest first. A folder may include its own files and those of any
# folder in an earlier row; folders in the same row may not include each other.
LAYERS=(
    "core"
    "json tok obs http"
    "upstream learn"
    "config store"
    "canon"
    "sim"
    "provider"
    "gate route account"
    "exec"
    "api"
    "serve"
    "main.c"
)
declare -A RANK
for i in "${!LAYERS[@]}"; do for f in ${LAYERS[$i]}; do RANK[$f]=$i; done; done

problems=0
say() { echo "$1"; problems=$((problems + 1)); }

# 1. includes
while IFS= read -r file; do
    rel=${file#src/}
    top=${rel%%/*}
    [[ $rel == main.c ]] && top=main.c
    if [[ -z ${RANK[$top]:-} ]]; then say "$file:1: folder '$top' is not in the layer table (scripts/lint.sh LAYERS)"; continue; fi
    while IFS=: read -r line inc; do
        dep=${inc%%/*}
        [[ $dep == "$top" ]] && continue
        if [[ -z ${RANK[$dep]:-} ]]; then say "$file:$line: includes \"$inc\" from folder '$dep', which is not in the layer table"; continue; fi
        if (( RANK[$dep] >= RANK[$top] )); then
            say "$file:$line: $top includes \"$inc\": $dep is not below $top (layers: docs/architecture.md)"
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[a-z_]*/' "$file" | sed -E 's/^([0-9]+):.*"([^"]+)".*/\1:\2/')
done < <(find src -name '*.[ch]' | sort)

# 2. bt_openai_ names outside files about OpenAI
while IFS=: read -r file line _; do
    [[ $file == *openai* ]] && continue
    say "$file:$line: a bt_openai_ name outside a file about OpenAI (use the neutral name)"
done < <(grep -rn 'bt_openai_' src --include='*.[ch]' | sort)

# 3. OpenAI wire strings in the format-neutral middle
for dir in exec http route gate; do
    [[ -d src/$dir ]] || continue
    while IFS=: read -r file line _; do
        say "$file:$line: an OpenAI wire string in src/$dir (ask the front end or the adapter)"
    done < <(grep -rnF -e '[DONE]' -e 'invalid_request_error' -e 'chat.completion' "src/$dir" | sort)
done

# 4. banned functions
while IFS=: read -r file line _; do
    say "$file:$line: a banned function (sprintf, vsprintf, strcpy, strcat, atoi, gets): use snprintf, bt_buf, memcpy with a length, strtol"
done < <(grep -rnE '(^|[^_[:alnum:]])(sprintf|vsprintf|strcpy|strcat|atoi|gets)[[:space:]]*\(' src --include='*.[ch]' | sort)

if (( problems )); then echo "lint: $problems problems"; exit 1; fi
echo "lint: ok"
