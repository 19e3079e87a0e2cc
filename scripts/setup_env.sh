#!/usr/bin/env bash
# Create the virtual environment and install the project with a torch that suits this machine.
#   TORCH=auto (default): a CUDA build where `nvidia-smi` finds a GPU, else a CPU-only build
#   TORCH=cpu | cuda | skip (skip: keep whatever torch the environment already has)
# A CPU build comes from a local wheel if pip can find one offline (CI machines keep one), else
# from PyTorch's CPU index; PyPI's default Linux torch is a multi-GB CUDA build.
set -euo pipefail
VENV=${VENV:-.venv}
TORCH=${TORCH:-auto}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.flax-cnn-installed"

if [[ -f $stamp && $stamp -nt pyproject.toml ]]; then
  exit 0  # installed, and pyproject.toml has not changed since
fi
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip

if [[ $TORCH == auto ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TORCH=cuda; else TORCH=cpu; fi
fi
case $TORCH in
  cuda)
    echo "setup: installing torch (CUDA build) and jax[cuda12]"
    pip install -q torch "jax[cuda12]" ;;
  cpu)
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
      echo "setup: installing a CPU-only torch"
      # A local wheel (pip's find-links) goes in without its dependencies (--no-index cannot
      # resolve them), then the same version again from the usual index brings them.
      if pip install -q --no-index --no-deps torch 2>/dev/null; then
        pip install -q "torch==$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"
      else
        pip install -q torch --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
      fi
    fi ;;
  skip) ;;
  *) echo "setup: TORCH must be auto, cpu, cuda or skip, got '$TORCH'" >&2; exit 2 ;;
esac
echo "setup: installing flax-cnn and its test tools"
pip install -q -e ".[test]"
touch "$stamp"
