#!/usr/bin/env bash
# Installs the Debian packages tsp needs, skipping those already present (idempotent).
# Used by `make demo`, `make test` and .ci/run; needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake make
  libdnnl-dev                 # oneDNN: GEMM (fp32, bf16)
  libopenmpi-dev openmpi-bin  # Open MPI: the distributed runtime
  googletest libgtest-dev libgmock-dev
  libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  fortunes fortunes-min        # real English text: the default demo corpus
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
