#!/usr/bin/env bash
# IJCV Fig. 7 on the 8-Gaussians (two thinned modes): per seed, a DCGAN-loss MLP GAN (z 2-D, 20k steps), then
# DFI, ENC_latent and ENC_image inverters (5k steps each) on the frozen GAN, then the mode-recovery report.
# ~1.5 min per seed on one CPU thread. Results: docs/results/gaussians/seed-*.{json,png}
set -euo pipefail
cd "$(dirname "$0")/.."
for seed in ${SEEDS:-0 1 2}; do
  run=runs/gaussians/seed-$seed
  gan=$run/gan/checkpoints/step-020000.safetensors
  [[ -f $gan ]] || python3 -m training train gan --data gaussians --loss dcgan --steps 20000 --seed "$seed" --z-dim 2 \
    --sample-every 5000 --checkpoint-every 5000 --threads 1 --run-dir "$run/gan"
  for method in dfi enc_latent enc_image; do
    [[ -f $run/$method/inverter.safetensors ]] || python3 -m training train inverter --gan "$gan" --method "$method" \
      --steps 5000 --hidden 256 --seed "$seed" --threads 1 --run-dir "$run/$method"
  done
  python3 -m training report gaussians --runs "$run" --docs docs/results/gaussians --name "seed-$seed"
done
