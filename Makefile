# tsp: the two set-up commands are `make demo` and `make test` (see README.md).
# Both install missing Debian packages, configure with CMake presets and build.
.PHONY: all deps build demo test test-release test-asan test-isa-avx2 fuzz clean-room bench bench-kernels clean
MAKEFLAGS += --no-print-directory

JOBS ?= $(shell nproc)
# Open MPI refuses root without these; tests and demos run on the local machine.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMP_NUM_THREADS ?= 1

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@start=$$(date +%s); cmake --preset release >/dev/null && cmake --build build/release -j$(JOBS) && \
	  echo "build: release built in $$(( $$(date +%s) - start )) s"

# The main job on its embedded default (scripts/demo.sh says each step): real English text from
# Debian packages (fortunes, the King James Bible) -> a SentencePiece BPE vocabulary -> token shards
# -> a 5.5 M-parameter model trained once on one rank (both cores as threads) and once with TSP over
# two ranks (one core each: every rank holds half of every weight and half of every sequence) ->
# the two runs side by side (losses, tokens/s, per-rank memory by category, bytes per step), the
# held-out loss, a loss chart (build/demo/loss.svg) and text generated with the trained tokenizer.
# A few minutes on 2 cores. DEMO_STEPS=N changes the training steps.
demo: build
	@bash scripts/demo.sh

# The kernel benchmark table on one core (GFLOP/s and % of the measured FMA peak).
bench-kernels: build
	./build/release/bench/kernels/tsp_bench_kernels --benchmark_counters_tabular=true \
	  --benchmark_filter='$(KERNEL_FILTER)' --benchmark_min_time=0.1
KERNEL_FILTER := BM_Peak|BM_Gemm/T:2048/in:512/out:1536|BM_Gemm/T:2048/in:1024/out:3072|BM_FlashAttention.*S:4096|BM_CrossEntropy|BM_RmsNorm|BM_SwiGlu|BM_Rope

test: test-release test-asan test-isa-avx2

test-release: build
	ctest --preset release -j2

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@start=$$(date +%s); cmake --preset asan >/dev/null && cmake --build build/asan -j$(JOBS) && \
	  echo "build: asan built in $$(( $$(date +%s) - start )) s"
	ASAN_OPTIONS=detect_leaks=0 ctest --preset asan -j2

# The AVX2 machine's path on this one. Both halves of the CPU code pick their kernels by CPU:
# oneDNN at run time (AVX-512 here, AVX2 on Zen 3; each sums in its own order) and simd.h at
# compile time (16 lanes with AVX-512, 8 with AVX2). On an AVX-512 CPU the tests of the code whose
# width follows the build (label "simd": the kernel, model and inference libraries' tests, i.e.
# every kernel against its reference and the model's forward/backward, prefill and decode against
# the double reference) run a second time from build/avx2, compiled for x86-64-v3 (AVX2 + FMA, no
# AVX-512: preset `avx2`), with oneDNN held to its AVX2 kernels (ONEDNN_MAX_CPU_ISA, oneDNN's
# documented switch): what a Zen 3 node runs. Only those three test programs are built there, to
# keep CI within its time (the layouts, training and CLI run on the same kernels and are checked
# on AVX2-only CPUs by the first pass). On an AVX2-only CPU the first pass already was that.
test-isa-avx2: deps
	@if grep -qw avx512f /proc/cpuinfo; then \
	  echo "test-isa-avx2: the simd-labelled tests again, compiled for x86-64-v3 and with ONEDNN_MAX_CPU_ISA=AVX2"; \
	  start=$$(date +%s); cmake --preset avx2 >/dev/null && \
	  cmake --build build/avx2 -j$(JOBS) --target tsp_kernels_tests tsp_model_tests tsp_infer_tests && \
	  echo "build: avx2 (kernel, model, inference tests) built in $$(( $$(date +%s) - start )) s" && \
	  ctest --preset avx2 -j2 -L simd; \
	else \
	  echo "test-isa-avx2: skipped: this CPU has no AVX-512, so the first pass ran the AVX2 kernels"; \
	fi

# libFuzzer (clang, ASan + UBSan) on the readers of untrusted files, one target after the other for
# FUZZ_SECONDS each, in build/fuzz (scripts/fuzz.sh; docs/testing.md, "Fuzzing"). A finding is
# copied to tests/fuzz-crashes/<target>/, which `make test` replays; the run then exits non-zero.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= safetensors config_json token_file train_state
fuzz:
	@bash scripts/install-deps.sh --fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_TARGETS)" JOBS=$(JOBS) bash scripts/fuzz.sh

bench: build
	./build/release/bench/kernels/tsp_bench_kernels --benchmark_counters_tabular=true
	./build/release/bench/model/tsp_bench_model --benchmark_counters_tabular=true
	mpirun -np 2 ./build/release/bench/comm/tsp_bench_comm

# The README's two commands on a minimal Debian 12 root (debootstrap), from the committed tree:
# what CI runs (.ci/run). Needs root. scripts/clean-room.sh says how.
clean-room:
	bash scripts/clean-room.sh "make demo" "make test"

clean:
	rm -rf build
