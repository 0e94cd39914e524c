#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine with Python ≥ 3.11 (idempotent, quick when done):
#   - Debian: dataset-fashion-mnist (the IDX files), npm (fetches the emoji packs), redis-server
#   - Python: CPU torch==2.13.0 first (an unpinned torch would pull GB of CUDA wheels), then this package
#   - data: the emoji npm packs, decoded once into ~/.cache/dfi (never into the repo)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || -n ${FASHION_MNIST_DIR:-} ]] || need_apt+=(dataset-fashion-mnist)
command -v npm >/dev/null || need_apt+=(npm)
[[ -x /usr/bin/redis-server ]] || need_apt+=(redis-server)  # Debian's: CI tests run against it
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)               # browser test of the page (tests/service/test_page.py)
[[ -x /usr/bin/chromedriver ]] || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: please run: sudo apt-get update && sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[train,service,worker,dev]"
# onnx2torch (refinement from any bundle's generator.onnx; GANs given as ONNX graphs) without its torchvision
# requirement: pip resolves that to PyPI's CUDA torchvision, which does not load beside the CPU torch and breaks
# torchmetrics; onnx2torch needs only numpy, onnx and torch here (dfi_core/refinement.py, pyproject.toml).
python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("onnx2torch") is None)' \
  || python3 -m pip install -q --no-deps onnx2torch==1.5.15

python3 -m training data prepare emoji >/dev/null
echo "setup: ok ($(python3 -c 'import torch; print("torch", torch.__version__)'))"
