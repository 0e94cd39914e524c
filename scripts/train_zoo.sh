#!/usr/bin/env bash
# Trains the GAN zoo and the classifiers behind docs/zoo.md, then scores every GAN's samples.
# Usage: bash scripts/train_zoo.sh [runs/zoo]   (CPU: ~2.5 h on 2 cores; a GPU: minutes)
# Every command below is also recorded in its run folder's command.txt.
set -euo pipefail
out=${1:-runs/zoo}
threads=${THREADS:-1}
gan() {  # gan DATA LOSS STEPS [extra options]
  local data=$1 loss=$2 steps=$3; shift 3
  [[ -f $out/$data-$loss/checkpoints/step-$(printf %06d "$steps").safetensors ]] && return 0
  python -m training train gan --data "$data" --loss "$loss" --steps "$steps" --seed 0 --threads "$threads" \
    --run-dir "$out/$data-$loss" "$@"
}
classifier() {  # classifier DATA STEPS
  [[ -f $out/$1-classifier/classifier.safetensors ]] && return 0
  python -m training train classifier --data "$1" --steps "$2" --seed 0 --threads "$threads" --run-dir "$out/$1-classifier"
}
case "${LANE:-all}" in
  a|all)
    gan fashion-mnist dcgan 10000
    gan fashion-mnist lsgan 10000
    classifier fashion-mnist 4000
    classifier emoji 2000
    gan emoji dcgan 4000 --g-width 32 --d-width 32 --z-dim 128 --sample-every 500
    ;;&
  b|all)
    gan fashion-mnist sngan 10000
    gan fashion-mnist wgan-gp 8000
    gan fashion-mnist dfm 4000
    gan fashion-mnist rfgan 4000
    ;;
esac
if [[ ${LANE:-all} == all || ${LANE:-} == eval ]]; then
  for run in "$out"/*-{dcgan,lsgan,sngan,wgan-gp,dfm,rfgan}; do
    [[ -d $run ]] || continue
    data=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"]["name"])' "$run/config.json")
    classifier=$out/$data-classifier/classifier.safetensors
    mapfile -t ckpts < <(ls "$run"/checkpoints/step-*.safetensors)
    # the final checkpoint → sample_fd.json; the one before it → sample_fd_stepN.json (docs/zoo.md's "FD earlier")
    python -m training evaluate samples --checkpoint "${ckpts[-1]}" --classifier "$classifier" --n 10000 --threads "$threads"
    if ((${#ckpts[@]} > 1)); then
      step=$(basename "${ckpts[-2]}" .safetensors); step=$((10#${step#step-}))
      python -m training evaluate samples --checkpoint "${ckpts[-2]}" --classifier "$classifier" --n 10000 \
        --threads "$threads" --out "$run/sample_fd_step$step.json"
    fi
  done
fi
