#!/usr/bin/env bash
# ICLR Table 1 / IJCV Table 2 analogue: DFI on every GAN of the zoo (Fashion-MNIST), reconstruction metrics next to
# each GAN's sample FD. A shorter zoo than scripts/train_zoo.sh (the full one is ~5 CPU-hours): DCGAN/LSGAN 5k,
# DFM/RFGAN 4k, WGAN-GP 2k generator steps (10k critic steps); SNGAN is the shipped bundle's (10k steps, rebuilt).
# Every GAN gets the same DFI: taps actv7-0,last, R = 4, depth 2, 5,000 steps, seed 0.
# Usage: bash scripts/iclr_table1.sh   (CPU: ~2.5 h on one thread; LANE=gans|dfi|eval runs one stage; ONE=dcgan one GAN's DFI)
set -euo pipefail
zoo=${ZOO:-runs/zoo-short}
out=${OUT:-runs/iclr}
classifier=${CLASSIFIER:-runs/zoo/fashion-mnist-classifier/classifier.safetensors}
sngan=runs/zoo/fashion-mnist-sngan/checkpoints/step-010000.safetensors
declare -A steps=([dcgan]=5000 [lsgan]=5000 [dfm]=4000 [rfgan]=4000 [wgan-gp]=2000)
ckpt() { echo "$zoo/fashion-mnist-$1/checkpoints/step-$(printf %06d "${steps[$1]}").safetensors"; }
if [[ ${LANE:-all} == all || ${LANE:-} == gans ]]; then
  [[ -f $sngan ]] || python -m training export gan-checkpoint --bundle models/fashion-mnist --out "$sngan"
  [[ -f $classifier ]] || python -m training train classifier --data fashion-mnist --steps 4000 --seed 0 --threads 1 \
    --run-dir "$(dirname "$classifier")"
  for loss in dcgan lsgan dfm rfgan wgan-gp; do
    [[ -f $(ckpt $loss) ]] || python -m training train gan --data fashion-mnist --loss $loss --steps "${steps[$loss]}" \
      --seed 0 --threads 1 --run-dir "$zoo/fashion-mnist-$loss" --checkpoint-every 1000
  done
fi
dfi() {  # dfi NAME GAN_CHECKPOINT
  [[ -f $out/$1/inverter.safetensors ]] || python -m training train inverter --gan "$2" --method dfi \
    --taps actv7-0,last --pool-size 4 --depth 2 --steps 5000 --seed 0 --threads 1 --sample-every 5000 --run-dir "$out/$1"
}
if [[ ${LANE:-all} == all || ${LANE:-} == dfi ]]; then
  dfi sngan "$sngan"
  for loss in ${ONE:-dcgan lsgan dfm rfgan wgan-gp}; do
    while [[ ${WAIT:-0} == 1 && ! -f $(ckpt $loss) ]]; do sleep 30; done  # WAIT=1: follow a running LANE=gans
    dfi "$loss" "$(ckpt $loss)"
  done
fi
if [[ ${LANE:-all} == all || ${LANE:-} == eval ]]; then
  args=()
  for name in sngan dcgan lsgan wgan-gp dfm rfgan; do args+=(--inverter "$name=$out/$name/inverter.safetensors"); done
  python -m training evaluate inverters "${args[@]}" --classifier "$classifier" --n 1000 --repeats 5 --sample-fd \
    --name zoo-table1 --out docs/results/zoo --threads 1
fi
