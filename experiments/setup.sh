#!/usr/bin/env bash
# Sets up trilemma_jax on a fresh machine: Debian's Fashion-MNIST files, a venv in
# .venv with the pinned packages, and the package itself (editable, with the dev
# extra). Safe to run again: it only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# TRILEMMA_ACCELERATOR=tpu, cuda12 or cuda13 adds jax's plugin for that device
# at the pinned jax version (TPU VMs, NVIDIA hosts); unset: CPU only.
accelerator=${TRILEMMA_ACCELERATOR:-}
case "$accelerator" in
  ""|tpu|cuda12|cuda13) ;;
  *) echo "TRILEMMA_ACCELERATOR must be tpu, cuda12, cuda13 or unset, got '$accelerator'" >&2
     exit 2 ;;
esac

# Debian packages, where we may install them (root with apt-get).
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Fashion-MNIST IDX files (the `fashion_mnist` dataset reads them offline).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if can_apt; then
    apt_install dataset-fashion-mnist
  else
    echo "note: install Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist)" \
         "to use the fashion_mnist dataset." >&2
  fi
fi

# Python 3.12 where pyenv has it (jax 0.12; see README), else python3.12, else python3 (>= 3.11).
PY=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.12.1/bin/python" ]; then
  PY="$(pyenv root)/versions/3.12.1/bin/python"
elif command -v python3.12 >/dev/null 2>&1; then
  PY=python3.12
else
  PY=python3
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "trilemma_jax needs Python >= 3.11"'
minor=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')

if [ ! -x .venv/bin/python ] || [ "$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')" != "$minor" ]; then
  rm -rf .venv
  if ! "$PY" -m venv .venv; then
    # Debian's Pythons ship venv's ensurepip in a package of its own.
    rm -rf .venv
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if can_apt; then
      apt_install "python${ver}-venv"
      "$PY" -m venv .venv
    else
      echo "error: $PY could not create a venv; on Debian install python${ver}-venv" \
           "(sudo apt-get install python${ver}-venv) and run this script again." >&2
      exit 1
    fi
  fi
fi

constraints="requirements/constraints-py${minor}.txt"
UV_VERSION=0.13.9
stamp=.venv/.trilemma-installed
want=$( (cat setup.cfg "$constraints" 2>/dev/null; echo "$accelerator $UV_VERSION") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # uv installs the same pinned versions as pip in about a third of the time (it
  # fetches in parallel and leaves bytecode to the first import); pip stays the
  # fallback where no uv wheel installs.
  if .venv/bin/python -m pip install -q "uv==$UV_VERSION" 2>/dev/null; then
    # uv does not read pip's configuration (index mirrors, certificates): where it
    # cannot install, pip does.
    install_pkgs() {
      .venv/bin/uv pip install -q --python .venv/bin/python "$@" || {
        echo "note: uv could not install $*; trying pip." >&2
        .venv/bin/python -m pip install -q "$@"
      }
    }
  else
    echo "note: uv $UV_VERSION did not install; using pip." >&2
    .venv/bin/python -m pip install -q --upgrade pip
    install_pkgs() { .venv/bin/python -m pip install -q "$@"; }
  fi
  if [ -f "$constraints" ]; then
    install_pkgs -c "$constraints" -e '.[dev]'
  else
    echo "note: no pinned versions for Python ${minor}; installing the newest that resolves." >&2
    install_pkgs -e '.[dev]'
  fi
  if [ -n "$accelerator" ]; then
    jax_version=$(.venv/bin/python -c 'import jax; print(jax.__version__)')
    install_pkgs "jax[$accelerator]==$jax_version"
  fi
  echo "$want" > "$stamp"
fi
