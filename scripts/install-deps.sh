#!/usr/bin/env bash
# Installs the Debian packages tsp needs, skipping those already present (idempotent). Checked on a
# minimal Debian 12 root (scripts/clean-room.sh): nothing else is assumed present.
#   scripts/install-deps.sh          # build, every test, the demo (used by `make demo` / `make test`)
#   scripts/install-deps.sh --bench  # also the benchmarks' peers: PyTorch for bench/compare_block.sh
#   scripts/install-deps.sh --fuzz   # also clang, libFuzzer and clang's OpenMP for `make fuzz`
# Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake make
  libdnnl-dev ocl-icd-opencl-dev  # oneDNN: GEMM (fp32, bf16); its CMake config calls find_package(OpenCL)
  libopenmpi-dev openmpi-bin  # Open MPI: the distributed runtime
  googletest libgtest-dev libgmock-dev
  libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  libxxhash-dev                # XXH3: checksums of the training state
  pkg-config libpcre2-dev      # PCRE2: the Unicode split regexes of tokenizer.json
  libsentencepiece-dev sentencepiece  # tokenizer.model files; spm_train/spm_encode for its test
  libicu-dev                   # ICU: the NFC/NFKC normalizers of tokenizer.json (Qwen2)
  fortunes fortunes-min        # real English text: the default demo corpus
  bible-kjv-text bible-kjv     # the King James Bible (4.4 MB of English): its compressed text and the
                               # `bible` program that prints it (bible -f gen1:1-rev22:21 > kjv.txt)
  iproute2                     # ip, tc: emulated hosts (scripts/hosts.sh) for the cross-host test
)

case "${1:-}" in
  "") ;;
  --bench) PACKAGES+=(python3-torch libopenblas0-pthread) ;;  # /usr/bin/python3 + PyTorch 1.13, the block benchmark's peer, on OpenBLAS (else the reference BLAS)
  --fuzz) PACKAGES+=(clang libclang-rt-14-dev libomp-dev) ;;  # clang 14, libclang_rt.fuzzer, libomp
  *) echo "install-deps: unknown option '$1' (use --bench, --fuzz or nothing)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
start=$SECONDS
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${#missing[@]} packages (and their dependencies) in $((SECONDS - start)) s"
