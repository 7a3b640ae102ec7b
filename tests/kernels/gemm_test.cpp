// gemm tests: written next
