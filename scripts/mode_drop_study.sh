#!/usr/bin/env bash
# Issue 23's mode-drop study on Fashion-MNIST: GANs trained with 0, 1, 2 and 3 classes left out of their training
# data, each with a DFI inverter at the same budget, scored by the per-class reconstruction metric on all 10,000
# unseen test images (with the 0-class run as the reference) and by sample FD / per-class sample counts.
# The classes come from a seeded draw, not a choice: torch.randperm(10, Generator().manual_seed(0))[:3] =
# [4 coat, 1 trouser, 7 sneaker], nested (drop1 ⊂ drop2 ⊂ drop3).
# Usage: LANE=a|b|eval|all bash scripts/mode_drop_study.sh [runs/mode-drop]
#   (CPU, 2 cores: lanes a and b side by side took 113 min on 2026-12-02 with other work on the cores, eval 8 min; every step is skipped once done, so a
#    stopped run resumes at the step it was in — GAN runs from their last checkpoint.)
set -euo pipefail
out=${1:-runs/mode-drop}
threads=${THREADS:-1}
steps=${GAN_STEPS:-5000}
cn_steps=${CN_STEPS:-5000}
classifier=${CLASSIFIER:-runs/zoo/fashion-mnist-classifier/classifier.safetensors}
declare -A drop=([drop0]="" [drop1]="coat" [drop2]="coat,trouser" [drop3]="coat,trouser,sneaker")

variant() {  # variant NAME: GAN → DFI inverter → bundle (study artefact, not shipped)
  local name=$1 run=$out/$1
  local final=$run/gan/checkpoints/step-$(printf %06d "$steps").safetensors
  if [[ ! -f $final ]]; then
    local last
    last=$(ls "$run"/gan/checkpoints/step-*.safetensors 2>/dev/null | tail -1 || true)
    if [[ -n $last ]]; then
      python -m training train gan --resume "$last" --steps "$steps" --threads "$threads"
    else
      python -m training train gan --data fashion-mnist --loss sngan --steps "$steps" --seed 0 --threads "$threads" \
        ${drop[$name]:+--exclude-classes "${drop[$name]}"} --run-dir "$run/gan"
    fi
  fi
  [[ -f $run/inverter/inverter.safetensors ]] || python -m training train inverter --gan "$final" --method dfi \
    --taps actv7-0,last --pool-size 7 --depth 2 --hidden 1024 --latent-loss mse --steps "$cn_steps" --batch-size 64 \
    --lr 0.001 --seed 0 --log-every 100 --sample-every 2000 --run-dir "$run/inverter" --threads "$threads"
  [[ -f $out/bundles/$name/manifest.json ]] || python -m training export bundle --inverter "$run/inverter/inverter.safetensors" \
    --classifier "$classifier" --name "$name" --out "$out/bundles" --n 1000 --refine-steps 0 --threads "$threads"
}

evaluate() {  # evaluate NAME: sample FD + per-class sample counts; the per-class reconstruction metric
  local name=$1 run=$out/$1
  local final=$run/gan/checkpoints/step-$(printf %06d "$steps").safetensors
  [[ -f $run/sample_fd.json ]] || python -m training evaluate samples --checkpoint "$final" --classifier "$classifier" \
    --n 10000 --seed 0 --out "$run/sample_fd.json" --threads "$threads"
  local reference=()
  [[ $name == drop0 ]] || reference=(--reference "$out/results/drop0-per-class.json")
  [[ -f $out/results/$name-per-class.json ]] || python -m training evaluate gan-metric --bundle "$out/bundles/$name" \
    --n 10000 --out "$out/results" "${reference[@]}" --threads "$threads"
}

case "${LANE:-all}" in
  a) variant drop0; variant drop2 ;;
  b) variant drop1; variant drop3 ;;
  all) for v in drop0 drop1 drop2 drop3; do variant "$v"; done ;;&
  eval|all) for v in drop0 drop1 drop2 drop3; do evaluate "$v"; done ;;
esac
