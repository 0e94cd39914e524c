#!/usr/bin/env bash
# The main job, until the inference service lands: set up, train a DCGAN on Fashion-MNIST for a short run
# (~5 min on 2 CPU cores), train the Fashion-MNIST classifier, and score the GAN's samples (Fréchet distance
# in the classifier's feature space). Results land in runs/demo/; the full zoo is scripts/train_zoo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=runs/demo
steps=${STEPS:-2000}
ckpt=$out/fashion-mnist-dcgan/checkpoints/step-$(printf %06d "$steps").safetensors
[[ -f $ckpt ]] || python3 -m training train gan --data fashion-mnist --loss dcgan --steps "$steps" --seed 0 \
  --sample-every 500 --run-dir "$out/fashion-mnist-dcgan"
[[ -f $out/fashion-mnist-classifier/classifier.safetensors ]] || python3 -m training train classifier \
  --data fashion-mnist --steps 1500 --run-dir "$out/fashion-mnist-classifier"
python3 -m training evaluate samples --checkpoint "$ckpt" \
  --classifier "$out/fashion-mnist-classifier/classifier.safetensors" --n 5000
echo "samples: $out/fashion-mnist-dcgan/samples/ — score: $out/fashion-mnist-dcgan/sample_fd.json"
