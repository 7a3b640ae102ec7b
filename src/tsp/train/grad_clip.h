// Gradient clipping by the global L2 norm over every parameter, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include "tsp/model/model_weights.h"

namespace tsp::train {

struct ClipResult {
  double norm = 0;     // global L2 norm before clipping, accumulated in double
  double scale = 1;    // factor applied (1 when not clipped)
  bool clipped = false;
};

// sqrt(sum of g^2 over every element of every tensor), in double.
double global_grad_norm(const model::ModelWeights& grads);

// If max_norm > 0 and norm > max_norm: every gradient element g becomes g * float(scale) with
// scale = max_norm / (norm + 1e-6) (torch's clip_coef), computed in double. max_norm <= 0 only
// measures. A non-finite norm is returned unclipped (the trainer reports it).
ClipResult clip_grad_norm(model::ModelWeights& grads, double max_norm);

}  // namespace tsp::train
