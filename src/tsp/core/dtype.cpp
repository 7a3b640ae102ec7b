// Parsing of dtype names given on the command line or in configs.
#include "tsp/core/dtype.h"

#include "tsp/core/check.h"

namespace tsp {

DType parse_dtype(std::string_view name) {
  if (name == "f32" || name == "fp32" || name == "float32") return DType::f32;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "i32" || name == "int32") return DType::i32;
  if (name == "i64" || name == "int64") return DType::i64;
  TSP_THROW(InvalidArgument, "unknown dtype '", name, "' (expected f32, bf16, i32 or i64)");
}

}  // namespace tsp
