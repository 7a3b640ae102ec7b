// SwiGLU activation of the gated MLP: out = silu(gate) * up, forward and backward.
// Storage f32 or bf16 (each operand independently), math in fp32.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// gate, up, out: [N, F] with unit inner stride and free row strides (gate and up may be column
// slices of one fused [N, 2F] buffer). out may alias gate or up exactly.
void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out);

// dgate = dout * up * silu'(gate), dup = dout * silu(gate), both OVERWRITTEN; all [N, F].
// dgate may alias gate and dup may alias up exactly (in-place backward into the fused buffer).
void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                     const Tensor& dup);

}  // namespace tsp::kernels
