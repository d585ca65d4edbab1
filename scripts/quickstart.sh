#!/usr/bin/env bash
# Set up aerossl in a fresh virtual environment and run the demo on the embedded UC Merced mini
# dataset, same 4 labels per class: supervised from scratch, then supervised and FixMatch on the
# ImageNet-pretrained EfficientNet-Lite0.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: the CPU build; an unpinned torch would pull several GB of CUDA wheels.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev,pretrained]"
.venv/bin/aerossl demo "$@"
