#!/usr/bin/env bash
# IJCV Table 1 / Fig. 8 on emoji: DFI, DFI_image, ENC_latent, ENC_image on the shipped emoji DCGAN (rebuilt from
# models/emoji), each 2,000 steps, seed 0, one thread (~10–15 min each on the CPU; the shipped DFI had 6,000), then
# all eight rows (each with and without 50 Adam steps of eq. 2) over 5 × 137 of the 688 test images.
# Usage: bash scripts/emoji_table1.sh   (METHODS="dfi enc_latent" to train a subset; EVAL=0 to skip scoring)
set -euo pipefail
out=${OUT:-runs/emoji-table1}
gan=runs/zoo/emoji-dcgan/checkpoints/step-004000.safetensors
classifier=${CLASSIFIER:-runs/zoo/emoji-classifier/classifier.safetensors}
[[ -f $gan ]] || python -m training export gan-checkpoint --bundle models/emoji --out "$gan"
[[ -f $classifier ]] || python -m training train classifier --data emoji --steps 2000 --seed 0 --threads 1 \
  --run-dir "$(dirname "$classifier")"
for method in ${METHODS:-dfi dfi_image enc_latent enc_image}; do
  [[ -f $out/$method/inverter.safetensors ]] || python -m training train inverter --gan "$gan" --method "$method" \
    --taps actv8-0,last --pool-size 4 --depth 2 --steps "${STEPS:-2000}" --seed 0 --threads 1 --sample-every 2000 \
    --run-dir "$out/$method"
done
if [[ ${EVAL:-1} == 1 ]]; then
  args=()
  for method in dfi dfi_image enc_latent enc_image; do args+=(--inverter "$method=$out/$method/inverter.safetensors"); done
  python -m training evaluate inverters "${args[@]}" --classifier "$classifier" --n 137 --repeats 5 --refine-steps 50 \
    --name emoji-table1 --out docs/results/table1 --threads 1
fi
