# tsp: the two set-up commands are `make demo` and `make test` (see README.md).
# Both install missing Debian packages, configure with CMake presets and build.
.PHONY: all deps build demo test test-release test-asan bench bench-kernels clean

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

# The main job on its embedded default: train the "tiny" preset on the fortunes corpus (real
# English text, byte tokenizer) for ~1 minute on this machine, print the corpus' unigram entropy
# next to the loss, evaluate the held-out split, write an HF checkpoint and generate text from it.
DEMO_DIR := build/demo
demo: build
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	OMP_NUM_THREADS=2 ./build/release/src/tsp/cli/tsp train --steps 600 --batch 8 --seq 64 \
	  --lr 1e-2 --min-lr 1e-3 --warmup 20 --eval-every 200 --eval-batches 16 \
	  --checkpoint-dir $(DEMO_DIR)/checkpoint --metrics $(DEMO_DIR)/metrics.jsonl
	./build/release/src/tsp/cli/tsp eval --checkpoint $(DEMO_DIR)/checkpoint --batches 32
	./build/release/src/tsp/cli/tsp generate --checkpoint $(DEMO_DIR)/checkpoint \
	  --prompt "The best way to" --max-new-tokens 200 --seed 1

# The kernel benchmark table on one core (GFLOP/s and % of the measured FMA peak).
bench-kernels: build
	./build/release/bench/kernels/tsp_bench_kernels --benchmark_counters_tabular=true \
	  --benchmark_filter='$(KERNEL_FILTER)' --benchmark_min_time=0.1
KERNEL_FILTER := BM_Peak|BM_Gemm/T:2048/in:512/out:1536|BM_Gemm/T:2048/in:1024/out:3072|BM_FlashAttention.*S:4096|BM_CrossEntropy|BM_RmsNorm|BM_SwiGlu|BM_Rope

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
	./build/release/bench/model/tsp_bench_model --benchmark_counters_tabular=true
	mpirun -np 2 ./build/release/bench/comm/tsp_bench_comm

clean:
	rm -rf build
