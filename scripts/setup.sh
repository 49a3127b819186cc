#!/usr/bin/env bash
# Sets up vla-gym on a fresh Debian/Ubuntu machine: system packages (when root), a virtual environment in
# .venv/ at the checkout's root, CPU torch first, then the project with every extra.
# Usage: bash scripts/setup.sh            (idempotent; re-running only fills in what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_VERSION=2.13.0

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

install_system_packages() {
  if [ "$(id -u)" != "0" ]; then
    log "not root: skipping apt packages (needed: libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libosmesa6 libgl1 libglib2.0-0, and Mesa >= 25 mesa-vulkan-drivers libvulkan1 for SimplerEnv-Bridge)"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || { log "no apt-get: install EGL/OSMesa and a Vulkan driver yourself"; return; }
  export DEBIAN_FRONTEND=noninteractive
  # SAPIEN 3 needs Mesa >= 25 lavapipe, which Debian bookworm ships only in bookworm-backports.
  local backports=""
  if grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
    backports=bookworm-backports
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      local uris
      uris=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
      [ -n "$uris" ] || uris=http://deb.debian.org/debian
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uris" > /etc/apt/sources.list.d/vla-gym-backports.sources
    fi
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libglvnd0 \
    libosmesa6 libgl1 libglib2.0-0 ffmpeg >/dev/null
  if [ -n "$backports" ]; then
    apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
}

install_python_packages() {
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  local pip=".venv/bin/python -m pip"
  $pip install -q -U pip
  # torch first, and as a constraint on every later step: otherwise a dependency chain upgrades it to a CUDA build.
  $pip install -q "torch==${TORCH_VERSION}"
  printf 'torch==%s\n' "$TORCH_VERSION" > .venv/constraints.txt
  $pip install -q -c .venv/constraints.txt -e ".[all,dev]"
  # Packages whose declared dependencies are wrong or unneeded for what we import (see README, Install).
  $pip install -q -c .venv/constraints.txt --no-deps -r requirements-nodeps.txt
}

install_system_packages
install_python_packages
log "done: $ROOT/.venv ($(.venv/bin/python -c 'import torch, mujoco; print("torch", torch.__version__, "mujoco", mujoco.__version__)'))"
