#!/usr/bin/env bash
# SCGAN, emoji configuration (issue 7): a 32×32 patch at (16, 16) inside the 64×64 image (the paper: 64 in 128).
# CPU-sized: G/D width 32, batch 32, patch GAN 3,000 / patch DFI 2,000 / G_full 2,000 steps on one thread (~40 min). α = 1, the value the Fashion-MNIST ablation picked (docs/results/scgan.md).
# Then outpaint.onnx goes into models/emoji and docs/results/scgan-emoji/ gets the numbers and figures.
set -euo pipefail
run=${RUN:-runs/scgan/emoji}
[[ -f $run/scgan.safetensors ]] || python -m training train scgan --data emoji --run-dir "$run" --patch-top 16 \
  --patch-left 16 --patch-size 32 --z-center 64 --z-edge 64 --g-width 32 --d-width 32 --batch-size 32 --alpha 1 \
  --patch-steps 3000 --dfi-steps 2000 --steps 2000 --seed 0 --threads 1
