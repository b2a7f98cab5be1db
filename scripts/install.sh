#!/usr/bin/env bash
# Create .venv and install blockprune with its dev extras, choosing torch well:
# - a Python whose torch already sees a GPU: the venv reuses that CUDA torch (system site packages);
# - otherwise torch is installed first as $TORCH_SPEC (default torch==2.13.0, the CPU wheel this
#   project's machines keep on local disk), so the project's "torch>=2.3" never pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  echo "install: $PY has a CUDA torch; $VENV reuses it"
  "$PY" -m venv --system-site-packages "$VENV"
else
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/python" -c "import torch, transformers, lightning; print(f'install: torch {torch.__version__}, transformers {transformers.__version__}, lightning {lightning.__version__}')"
