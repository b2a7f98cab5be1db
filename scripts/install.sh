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

# Reuse a CUDA torch only when it satisfies the project's floor (torch>=2.6: weights_only loading is
# safe from 2.6 on, CVE-2025-32434); an older one would otherwise be kept by pip and silently used.
if "$PY" -c "import sys, torch; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(0 if torch.cuda.is_available() and v >= (2, 6) else 1)" >/dev/null 2>&1; then
  echo "install: $PY has a CUDA torch >= 2.6; $VENV reuses it"
  "$PY" -m venv --system-site-packages "$VENV"
else
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/python" -c "import torch, transformers, lightning; print(f'install: torch {torch.__version__}, transformers {transformers.__version__}, lightning {lightning.__version__}')"
