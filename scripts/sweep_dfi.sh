#!/usr/bin/env bash
# IJCV sec. 4.7 analogues (Tables 4, 5, 7) on the shipped Fashion-MNIST SNGAN: which D taps form D^f, the pooling
# size R of intermediate taps, and the connection network's depth. Every run: DFI, 5,000 steps, seed 0, one thread
# (~4.5 min each on the 2-core CPU). The GAN is rebuilt from models/fashion-mnist (no training folder needed).
# Usage: bash scripts/sweep_dfi.sh [runs/sweep]   (EVAL=0: train only; the scoring writes docs/results/sweep/)
set -euo pipefail
out=${1:-runs/sweep}
gan=runs/zoo/fashion-mnist-sngan/checkpoints/step-010000.safetensors
[[ -f $gan ]] || python -m training export gan-checkpoint --bundle models/fashion-mnist --out "$gan"
run() {  # run NAME [inverter options]
  local name=$1; shift
  [[ -f $out/$name/inverter.safetensors ]] && return 0
  python -m training train inverter --gan "$gan" --method dfi --steps "${STEPS:-5000}" --seed 0 --threads 1 \
    --sample-every 5000 --run-dir "$out/$name" "$@"
}
run taps-actv7+last     --taps actv7-0,last --pool-size 4 --depth 2   # the shipped configuration (reference row)
run taps-last           --taps last --depth 2
run taps-actv14+last    --taps actv14-0,last --pool-size 4 --depth 2
run taps-all            --taps actv14-0,actv7-0,last --pool-size 4 --depth 2
run pool-1              --taps actv7-0,last --pool-size 1 --depth 2
run pool-2              --taps actv7-0,last --pool-size 2 --depth 2
run pool-7              --taps actv7-0,last --pool-size 7 --depth 2
run depth-1             --taps actv7-0,last --pool-size 4 --depth 1
run depth-3             --taps actv7-0,last --pool-size 4 --depth 3
run depth-4             --taps actv7-0,last --pool-size 4 --depth 4
if [[ ${EVAL:-1} == 1 ]]; then
  classifier=${CLASSIFIER:-runs/zoo/fashion-mnist-classifier/classifier.safetensors}
  [[ -f $classifier ]] || python -m training train classifier --data fashion-mnist --steps 4000 --seed 0 --threads 1 \
    --run-dir "$(dirname "$classifier")"
  args=()
  for name in taps-last taps-actv7+last taps-actv14+last taps-all pool-1 pool-2 pool-7 depth-1 depth-3 depth-4; do
    args+=(--inverter "$name=$out/$name/inverter.safetensors")
  done
  python -m training evaluate inverters "${args[@]}" --classifier "$classifier" --n 1000 --repeats 5 \
    --name sweep-sec4.7 --out docs/results/sweep --threads 1
fi
