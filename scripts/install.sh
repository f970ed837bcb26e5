#!/usr/bin/env bash
# Install streamsim (editable, with the dev tools) into a virtual environment.
#
#   VENV=.venv (default)   the environment to create or reuse
#   PYTHON=/path/python    install into that interpreter's environment instead (e.g. a conda env
#                          that already has a CUDA torch)
#
# torch: an already installed torch is honoured (pinned to its version so pip never swaps it);
# with no torch, a machine with an NVIDIA GPU gets pip's default (CUDA) torch, and a CPU-only
# machine gets the CPU build pinned in constraints-cpu.txt instead of a multi-GB CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  venv="${VENV:-.venv}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py="$venv/bin/python"
fi
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
if torch_version=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
  echo "streamsim install: keeping the installed torch $torch_version"
  echo "torch==$torch_version" > "$constraints"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "streamsim install: NVIDIA GPU found, installing pip's default (CUDA) torch"
  : > "$constraints"
else
  echo "streamsim install: no torch and no GPU, installing the CPU build from constraints-cpu.txt"
  cp constraints-cpu.txt "$constraints"
fi
# dev: the test and lint tools; ray: `streamsim sweep --executor ray` (and its test)
"$py" -m pip install --progress-bar off -c "$constraints" -e ".[dev,ray]"
