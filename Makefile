# tsp: the two set-up commands are `make demo` and `make test` (see README.md).
# Both install missing Debian packages, configure with CMake presets and build.
.PHONY: all deps build demo test test-release test-asan bench clean

JOBS ?= $(shell nproc)
# Open MPI refuses root without these; tests and demos run on the local machine.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMP_NUM_THREADS ?= 1

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build build/release -j$(JOBS)

# Until the engine trains (issue #3), the demo is the kernel benchmark table on one core.
demo: build
	./build/release/bench/kernels/tsp_bench_kernels --benchmark_counters_tabular=true \
	  --benchmark_filter='$(DEMO_FILTER)' --benchmark_min_time=0.1
DEMO_FILTER := BM_Gemm/T:2048/in:512/out:1536|BM_Gemm/T:2048/in:1024/out:3072|BM_FlashAttention.*S:4096|BM_CrossEntropy|BM_RmsNorm

test: test-release test-asan

test-release: build
	ctest --preset release -j2

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build build/asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=0 ctest --preset asan -j2

bench: build
	./build/release/bench/kernels/tsp_bench_kernels --benchmark_counters_tabular=true

clean:
	rm -rf build
