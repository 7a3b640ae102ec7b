#include "tsp/kernels/gemm.h"
