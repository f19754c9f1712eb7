#!/usr/bin/env bash
# Wheels that the GPU machine (no internet; its image has torch, transformers, accelerate, peft, triton, pyarrow, …)
# lacks for benchmarks/gpu_truth.py, downloaded here into .whl/ (git-ignored) for the device tool's `carry`.
# The project's own versions of the training stack (what CI runs train_entry with), CPython 3.12, x86-64.
# bitsandbytes is slimmed to its CPU and CUDA 13 libraries so the whole carry stays under the 64 MiB limit.
#
#   bash benchmarks/gpu_wheels.sh            # then see benchmarks/README.md "GPU run" for the device command
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/main/.venv/bin/python}
rm -rf .whl && mkdir -p .whl
PKGS=(
  trl==1.16.0 transformers==5.24.0 peft==0.21.2 datasets==5.2.0 bitsandbytes==0.50.2 liger-kernel==0.8.5
  "dill>=0.3.0,<0.4.2" "multiprocess<0.70.20" pydantic==2.14.4 pydantic-core==2.50.5 annotated-types
  typing-inspection
)
for pkg in "${PKGS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$pkg" 2>&1 | grep -v "is ignored: it is neither" || true
done
# bitsandbytes ships one native library per CUDA/ROCm/XPU release (~43 MB); the GPU image is CUDA 13.
"$PY" - .whl/bitsandbytes-*.whl <<'PYEOF'
import re, shutil, sys, zipfile
drop = re.compile(r"bitsandbytes/libbitsandbytes_(cuda1[12]\d|rocm|xpu)")
for src in sys.argv[1:]:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(src + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if not drop.match(item.filename):
                zout.writestr(item, zin.read(item.filename))
    shutil.move(src + ".tmp", src)
PYEOF
ls -la .whl
du -sh .whl
