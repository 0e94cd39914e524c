#!/usr/bin/env bash
# The shipped Fashion-MNIST DFI (R = 7, 30k steps) against the encoders of IJCV Table 1 with the same R = 7
# pooling and CN, 10k steps each: ENC_latent (encoder of D's architecture from scratch, latent loss) and ENC_image
# (the same encoder, image loss on real train images). The DFI recipe at 10k steps is docs/results/sweep/r7-10k.json
# (sweep_dfi.sh's R = 7 run). One thread each on the 2-core CPU: 30k DFI steps ≈ 85 min, each encoder ≈ 45 min.
# Scores → docs/results/sweep/r7-30k.{json,md,png}.
# Usage: bash scripts/dfi_r7.sh [runs/dfi-long]   (EVAL=0: train only)
set -euo pipefail
out=${1:-runs/dfi-long}
gan=runs/zoo/fashion-mnist-sngan/checkpoints/step-010000.safetensors
[[ -f $gan ]] || python -m training export gan-checkpoint --bundle models/fashion-mnist --out "$gan"
run() {  # run NAME METHOD STEPS
  [[ -f $out/$1/inverter.safetensors ]] && return 0
  python -m training train inverter --gan "$gan" --method "$2" --steps "$3" --seed 0 --threads 1 \
    --taps actv7-0,last --pool-size 7 --run-dir "$out/$1"
}
run r7-30k dfi 30000
run enc_latent-r7-10k enc_latent 10000
run enc_image-r7-10k enc_image 10000
if [[ ${EVAL:-1} == 1 ]]; then
  classifier=${CLASSIFIER:-runs/zoo/fashion-mnist-classifier/classifier.safetensors}
  [[ -f $classifier ]] || python -m training train classifier --data fashion-mnist --steps 4000 --seed 0 --threads 1 \
    --run-dir "$(dirname "$classifier")"
  python -m training evaluate inverters --inverter "dfi-R7-30k=$out/r7-30k/inverter.safetensors" \
    --inverter "enc_latent-R7-10k=$out/enc_latent-r7-10k/inverter.safetensors" \
    --inverter "enc_image-R7-10k=$out/enc_image-r7-10k/inverter.safetensors" \
    --classifier "$classifier" --n 1000 --repeats 5 --refine-steps 50 --name r7-30k --out docs/results/sweep --threads 1
fi
