// Naive GEMM reference: triple loop with double accumulation, same semantics as kernels::gemm.
// Used by tests to validate the oneDNN path; never on a hot path.
#pragma once

#include "tsp/core/tensor.h"
#include "tsp/kernels/gemm.h"

namespace tsp::kernels::reference {

void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options = {});

}  // namespace tsp::kernels::reference
