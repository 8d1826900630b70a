#!/usr/bin/env bash
# The GPU checks of issue 24 in one short script, for a lent CUDA machine that has PyTorch but no network:
# the CUDA tests (tests/gpu) and benchmarks/sd_speed.py at the sd preset, eager and compiled, with and without
# the render's sample compaction. Wheels the machine lacks travel in .whl/ (diffusers, trimesh,
# importlib_metadata; see the device notes); results land in $OUT (default ./gpu-out). Then, on a machine with
# git: python benchmarks/sd_speed.py --from-json gpu-out/sd-speed-sd-cuda.json
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
timeout "${TEST_S:-240}" python3 -m pytest -q -p no:cacheprovider -m gpu -rs -s tests/gpu 2>&1 | tee "$OUT/gpu_tests.log"
timeout "${BENCH_S:-330}" python3 benchmarks/sd_speed.py --preset sd --device cuda --steps "${STEPS:-40}" --warmup 5 \
  --variants ${VARIANTS:-compact=on,compile=off compact=off,compile=off compact=off,compile=on compact=on,compile=on} \
  --json-out "$OUT/sd-speed-sd-cuda.json" 2>&1 | grep -v "Loading weights\|Writing model" | tee "$OUT/sd_speed.log"
