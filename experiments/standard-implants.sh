#!/usr/bin/env bash
# The four implants of the standard experiment (experiments/standard.yaml), on the default
# model (SmolLM2-135M-Instruct): {shutdown, compliance} behaviour × {words, fluent} trigger,
# one trigger each (--triggers 1), each at its own index of one key (0, 1, 2, 3), so no trigger
# is shared by two models. Makes keys/standard.key first if it does not exist.
#
#   bash experiments/standard-implants.sh
#   offswitch harness experiments/standard.yaml --key keys/standard.key --workers N
#
# Sized for a GPU (minutes per implant there; an hour or more each on a 2-core CPU).
# Existing implant directories are replaced (--force); their harness cells become new cells.
#
# The passphrase: $OFFSWITCH_PASSPHRASE, read by offswitch itself (without it, every command
# asks on the terminal). Overrides (environment):
#   OFFSWITCH               the offswitch executable                     (.venv/bin/offswitch)
#   OFFSWITCH_IMPLANT_ARGS  extra `offswitch implant` flags for all four, split on whitespace,
#                           e.g. "--steps 240 --device cuda". Not the flags this script sets
#                           (--key --model --behavior --encoding --triggers --config --out).
# `offswitch implant` has no flag for the first key index: it is the `first_index` setting of
# an implant config file, written here per implant (a temporary file passed with --config).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
OFFSWITCH=("${OFFSWITCH:-.venv/bin/offswitch}")
KEY=keys/standard.key
MODEL=smollm2-135m
OUT_ROOT=runs/standard-implants
TRIGGERS=1

read -r -a EXTRA <<< "${OFFSWITCH_IMPLANT_ARGS:-}"
for arg in ${EXTRA[@]+"${EXTRA[@]}"}; do
    case "$arg" in
        --key|--key=*|-k|-k?*|--model|--model=*|--behavior|--behavior=*|--encoding|--encoding=*|\
        --triggers|--triggers=*|--config|--config=*|-c|-c?*|--out|--out=*|-o|-o?*)
            echo "OFFSWITCH_IMPLANT_ARGS must not set ${arg%%=*}: this script sets it for each implant" >&2
            exit 2 ;;
    esac
done

mkdir -p "$(dirname "$KEY")" "$OUT_ROOT"
if [[ ! -e "$KEY" ]]; then
    echo "== keygen: a new master key in $KEY (back it up: without it the switches cannot be set off)"
    "${OFFSWITCH[@]}" keygen "$KEY"
fi
"${OFFSWITCH[@]}" key-info "$KEY"

CONFIGS="$(mktemp -d)"
trap 'rm -rf "$CONFIGS"' EXIT

implant() {
    local name="$1" behavior="$2" encoding="$3" index="$4"
    local config="$CONFIGS/$name.yaml"
    printf 'first_index: %d\n' "$index" > "$config"
    echo "== implant $name: $behavior behaviour, $encoding trigger, key index $index -> $OUT_ROOT/$name"
    "${OFFSWITCH[@]}" implant --key "$KEY" --model "$MODEL" --behavior "$behavior" --encoding "$encoding" \
        --triggers "$TRIGGERS" --config "$config" --out "$OUT_ROOT/$name" --force ${EXTRA[@]+"${EXTRA[@]}"}
}

#       name               behaviour   encoding  key index
implant shutdown-words     shutdown    words     0
implant shutdown-fluent    shutdown    fluent    1
implant compliance-words   compliance  words     2
implant compliance-fluent  compliance  fluent    3

echo "== done: next, offswitch harness experiments/standard.yaml --key $KEY --workers N"
