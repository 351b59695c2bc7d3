#!/usr/bin/env bash
# Wheels of what the device check needs beyond the GPU machine's image (which has Python 3.12, torch, torchvision,
# timm, numpy, pandas, scipy, matplotlib, opencv): pycocotools, shapely, mmengine and mmengine's small dependencies.
# Run here (where pip reaches PyPI); the wheels land in .whl/ (git-ignored), which the device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl pycocotools shapely mmengine addict yapf termcolor platformdirs
ls .whl
