#!/usr/bin/env bash
# A train + invert demo on Fashion-MNIST (~15 min on 2 CPU
# cores): set up; train a DCGAN; train the classifier and score the GAN's samples (Fréchet distance in its
# feature space); train a DFI connection network on the frozen GAN; invert 500 unseen test images with DFI and
# DFI^opt (50 refinement steps) and report PSNR/SSIM with a grid. Results land in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${OUT:-runs/demo}
steps=${STEPS:-2000}
ckpt=$out/fashion-mnist-dcgan/checkpoints/step-$(printf %06d "$steps").safetensors
[[ -f $ckpt ]] || python3 -m training train gan --data fashion-mnist --loss dcgan --steps "$steps" --seed 0 \
  --sample-every 500 --run-dir "$out/fashion-mnist-dcgan"
[[ -f $out/fashion-mnist-classifier/classifier.safetensors ]] || python3 -m training train classifier \
  --data fashion-mnist --steps "${CLASSIFIER_STEPS:-1500}" --run-dir "$out/fashion-mnist-classifier"
python3 -m training evaluate samples --checkpoint "$ckpt" \
  --classifier "$out/fashion-mnist-classifier/classifier.safetensors" --n 5000
[[ -f $out/fashion-mnist-dcgan-dfi/inverter.safetensors ]] || python3 -m training train inverter --gan "$ckpt" \
  --method dfi --taps actv7-0,last --pool-size 4 --steps "${INVERTER_STEPS:-3000}" --run-dir "$out/fashion-mnist-dcgan-dfi"
python3 -m training evaluate reconstruction --inverter "$out/fashion-mnist-dcgan-dfi/inverter.safetensors" \
  --n 500 --refine-steps 50
echo "samples: $out/fashion-mnist-dcgan/samples/ — sample score: $out/fashion-mnist-dcgan/sample_fd.json"
echo "inversion: $out/fashion-mnist-dcgan-dfi/reconstruction.png and reconstruction.json"
