// ModelConfig validation, derived sizes and parameter counts, HF config.json reading and writing,
// and the named presets.
#include "tsp/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/checked_math.h"
#include "tsp/core/file_io.h"

namespace tsp::model {

using nlohmann::json;

ModelConfig::ModelConfig(const ModelConfigFields& fields) : f_(fields) {
  TSP_CHECK(f_.hidden_size > 0, "hidden_size must be positive, got ", f_.hidden_size);
  TSP_CHECK(f_.intermediate_size > 0, "intermediate_size must be positive, got ", f_.intermediate_size);
  TSP_CHECK(f_.num_hidden_layers > 0, "num_hidden_layers must be positive, got ", f_.num_hidden_layers);
  TSP_CHECK(f_.num_attention_heads > 0, "num_attention_heads must be positive, got ",
            f_.num_attention_heads);
  TSP_CHECK(f_.num_key_value_heads > 0, "num_key_value_heads must be positive, got ",
            f_.num_key_value_heads);
  TSP_CHECK(f_.vocab_size > 0, "vocab_size must be positive, got ", f_.vocab_size);
  TSP_CHECK(f_.max_position_embeddings > 0, "max_position_embeddings must be positive, got ",
            f_.max_position_embeddings);
  for (const auto& [name, value, cap] :
       {std::tuple{"hidden_size", f_.hidden_size, ModelConfigLimits::hidden_size},
        std::tuple{"intermediate_size", f_.intermediate_size, ModelConfigLimits::intermediate_size},
        std::tuple{"num_hidden_layers", f_.num_hidden_layers, ModelConfigLimits::num_hidden_layers},
        std::tuple{"num_attention_heads", f_.num_attention_heads, ModelConfigLimits::num_attention_heads},
        std::tuple{"num_key_value_heads", f_.num_key_value_heads, ModelConfigLimits::num_attention_heads},
        std::tuple{"vocab_size", f_.vocab_size, ModelConfigLimits::vocab_size},
        std::tuple{"max_position_embeddings", f_.max_position_embeddings,
                   ModelConfigLimits::max_position_embeddings}}) {
    TSP_CHECK(value <= cap, name, " ", value, " exceeds the supported maximum ", cap);
  }
  TSP_CHECK(f_.rms_norm_eps > 0, "rms_norm_eps must be positive, got ", f_.rms_norm_eps);
  TSP_CHECK(f_.rope_theta > 0, "rope_theta must be positive, got ", f_.rope_theta);
  TSP_CHECK(f_.sliding_window >= 0 && f_.sliding_window <= ModelConfigLimits::max_position_embeddings,
            "sliding_window must be in [0, ", ModelConfigLimits::max_position_embeddings,
            "] (0: none), got ", f_.sliding_window);
  TSP_CHECK(f_.sliding_window == 0 || f_.model_type == ModelType::mistral,
            "sliding_window ", f_.sliding_window, " needs model_type mistral (Llama has no window)");
  kernels::validate_rope_options(rope_options());
  TSP_CHECK(f_.head_dim >= 0 && f_.head_dim <= ModelConfigLimits::hidden_size, "head_dim ",
            f_.head_dim, " outside [0, ", ModelConfigLimits::hidden_size, "] (0: hidden_size / num_attention_heads)");
  if (f_.head_dim == 0)
    TSP_CHECK(f_.hidden_size % f_.num_attention_heads == 0, "hidden_size ", f_.hidden_size,
              " is not divisible by num_attention_heads ", f_.num_attention_heads,
              " (and no head_dim is given)");
  TSP_CHECK(f_.num_attention_heads % f_.num_key_value_heads == 0, "num_attention_heads ",
            f_.num_attention_heads, " is not divisible by num_key_value_heads ",
            f_.num_key_value_heads);
  if (f_.head_dim > 0)
    TSP_CHECK(head_dim() % 2 == 0, "head_dim ", head_dim(), " must be even for RoPE");
  else
    TSP_CHECK(head_dim() % 2 == 0, "head_dim = hidden_size / num_attention_heads = ", f_.hidden_size,
              " / ", f_.num_attention_heads, " = ", head_dim(), " must be even for RoPE");
  TSP_CHECK_T(DTypeError,
              f_.torch_dtype == DType::f32 || f_.torch_dtype == DType::bf16 || f_.torch_dtype == DType::f16,
              "torch_dtype must be f32, bf16 or f16, got ", f_.torch_dtype);
  for (const auto& [name, id] : {std::pair{"bos_token_id", f_.bos_token_id},
                                 std::pair{"eos_token_id", f_.eos_token_id},
                                 std::pair{"pad_token_id", f_.pad_token_id}}) {
    if (id) TSP_CHECK(*id >= 0 && *id < f_.vocab_size, name, " ", *id, " outside vocab [0, ",
                      f_.vocab_size, ")");
  }
}

int64_t ModelConfig::attention_params_per_layer() const {
  const int64_t h = f_.hidden_size;
  // q, o: h x h; k, v: kv_dim x h. Checked although the field caps keep it far from 2^63.
  return add_checked(product_checked("attention parameters", {2, h, q_dim()}),
                     product_checked("attention parameters", {2, h, kv_dim()}), "attention parameters");
}

int64_t ModelConfig::mlp_params_per_layer() const {
  return product_checked("MLP parameters", {3, f_.hidden_size, f_.intermediate_size});
}

int64_t ModelConfig::matrix_params_per_layer() const {
  return add_checked(attention_params_per_layer(), mlp_params_per_layer(), "parameters per layer");
}

int64_t ModelConfig::bias_params_per_layer() const { return qkv_bias() ? q_dim() + 2 * kv_dim() : 0; }

int64_t ModelConfig::norm_params_per_layer() const { return 2 * f_.hidden_size; }

int64_t ModelConfig::params_per_layer() const {
  return add_checked(add_checked(matrix_params_per_layer(), bias_params_per_layer(), "parameters per layer"),
                     norm_params_per_layer(), "parameters per layer");
}

int64_t ModelConfig::embedding_params() const {
  return mul_checked(f_.vocab_size, f_.hidden_size, "embedding parameters");
}

int64_t ModelConfig::lm_head_params() const { return f_.tie_word_embeddings ? 0 : embedding_params(); }

int64_t ModelConfig::non_embedding_params() const {
  return add_checked(mul_checked(f_.num_hidden_layers, params_per_layer(), "non-embedding parameters"),
                     f_.hidden_size, "non-embedding parameters");
}

int64_t ModelConfig::total_params() const {
  return add_checked(add_checked(non_embedding_params(), embedding_params(), "total parameters"),
                     lm_head_params(), "total parameters");
}

namespace {

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1'000) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}



// The legacy (transformers 4) form, which transformers 5 still reads; null when there is none.
json rope_scaling_to_json(const kernels::RopeScaling& r) {
  using kernels::RopeScalingType;
  if (r.type == RopeScalingType::none) return nullptr;
  json j;
  j["rope_type"] = kernels::rope_scaling_name(r.type);
  j["factor"] = r.factor;
  if (r.type == RopeScalingType::llama3) {
    j["low_freq_factor"] = r.low_freq_factor;
    j["high_freq_factor"] = r.high_freq_factor;
  }
  if (r.type == RopeScalingType::llama3 || r.type == RopeScalingType::yarn)
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  if (r.type == RopeScalingType::yarn) {
    j["beta_fast"] = r.beta_fast;
    j["beta_slow"] = r.beta_slow;
    if (r.attention_factor > 0) j["attention_factor"] = r.attention_factor;
    if (r.mscale != 0) j["mscale"] = r.mscale;
    if (r.mscale_all_dim != 0) j["mscale_all_dim"] = r.mscale_all_dim;
    j["truncate"] = r.truncate;
  }
  return j;
}

}  // namespace

std::string_view model_type_name(ModelType t) {
  switch (t) {
    case ModelType::mistral: return "mistral";
    case ModelType::qwen2: return "qwen2";
    case ModelType::llama: break;
  }
  return "llama";
}

std::string torch_dtype_name(DType t) {
  return t == DType::bf16 ? "bfloat16" : t == DType::f16 ? "float16" : "float32";
}

std::string ModelConfig::summary() const {
  std::ostringstream os;
  os << "h=" << f_.hidden_size << " L=" << f_.num_hidden_layers << " H=" << f_.num_attention_heads
     << " H_kv=" << f_.num_key_value_heads << " d=" << head_dim() << " F=" << f_.intermediate_size
     << " V=" << f_.vocab_size << (f_.tie_word_embeddings ? " tied" : "")
     << (qkv_bias() ? " qkv_bias" : "")
     << (f_.sliding_window > 0 ? " window=" + std::to_string(f_.sliding_window) : "") << " "
     << dtype_name(f_.torch_dtype) << " params=" << human_count(total_params()) << " rope "
     << kernels::describe_rope(rope_options());
  return os.str();
}

bool operator==(const ModelConfig& a, const ModelConfig& b) {
  const ModelConfigFields &x = a.f_, &y = b.f_;
  return x.hidden_size == y.hidden_size && x.intermediate_size == y.intermediate_size &&
         x.num_hidden_layers == y.num_hidden_layers && x.num_attention_heads == y.num_attention_heads &&
         x.num_key_value_heads == y.num_key_value_heads && a.head_dim() == b.head_dim() &&
         x.model_type == y.model_type && x.sliding_window == y.sliding_window &&
         x.vocab_size == y.vocab_size &&
         x.rms_norm_eps == y.rms_norm_eps && x.rope_theta == y.rope_theta && x.rope_scaling == y.rope_scaling &&
         x.max_position_embeddings == y.max_position_embeddings &&
         x.tie_word_embeddings == y.tie_word_embeddings && x.torch_dtype == y.torch_dtype &&
         x.bos_token_id == y.bos_token_id && x.eos_token_id == y.eos_token_id &&
         x.pad_token_id == y.pad_token_id;
}

std::string config_to_json(const ModelConfig& config) {
  const ModelConfigFields& f = config.fields();
  json j;
  const bool mistral = f.model_type == ModelType::mistral, qwen2 = f.model_type == ModelType::qwen2;
  j["architectures"] = json::array({mistral ? "MistralForCausalLM"
                                    : qwen2 ? "Qwen2ForCausalLM"
                                            : "LlamaForCausalLM"});
  j["model_type"] = model_type_name(f.model_type);
  if (mistral) j["sliding_window"] = f.sliding_window > 0 ? json(f.sliding_window) : json(nullptr);
  if (qwen2) j["use_sliding_window"] = false;
  j["hidden_act"] = "silu";
  // Qwen2's q/k/v biases come with its type (HF's Qwen2Config has no attention_bias field).
  if (!qwen2) j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["rope_scaling"] = rope_scaling_to_json(f.rope_scaling);
  j["hidden_size"] = f.hidden_size;
  j["intermediate_size"] = f.intermediate_size;
  j["num_hidden_layers"] = f.num_hidden_layers;
  j["num_attention_heads"] = f.num_attention_heads;
  j["num_key_value_heads"] = f.num_key_value_heads;
  j["head_dim"] = config.head_dim();
  j["vocab_size"] = f.vocab_size;
  j["rms_norm_eps"] = f.rms_norm_eps;
  j["rope_theta"] = f.rope_theta;
  j["max_position_embeddings"] = f.max_position_embeddings;
  j["tie_word_embeddings"] = f.tie_word_embeddings;
  j["torch_dtype"] = torch_dtype_name(f.torch_dtype);
  if (f.bos_token_id) j["bos_token_id"] = *f.bos_token_id;
  if (f.eos_token_id) j["eos_token_id"] = *f.eos_token_id;
  if (f.pad_token_id) j["pad_token_id"] = *f.pad_token_id;
  return j.dump(2) + "\n";
}

namespace {

// Typed field access with errors that name the source and the field.
class JsonFields {
 public:
  JsonFields(const json& j, std::string_view source) : j_(j), source_(source) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const char* key) const {
    if (!j_.contains(key)) TSP_THROW(IoError, source_, ": required field \"", key, "\" is missing");
    return integer_value(key, j_.at(key));
  }
  int64_t integer_or(const char* key, int64_t fallback) const {
    return has(key) ? integer_value(key, j_.at(key)) : fallback;
  }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) type_error(key, v, "a number");
    return v.get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) type_error(key, v, "true or false");
    return v.get<bool>();
  }
  std::optional<std::string> string(const char* key) const {
    if (!has(key)) return std::nullopt;
    const json& v = j_.at(key);
    if (!v.is_string()) type_error(key, v, "a string");
    return v.get<std::string>();
  }
  // HF writes token ids as an integer, null, or (Llama 3 eos) a list: the first entry is kept.
  std::optional<int64_t> token_id(const char* key) const {
    if (!has(key)) return std::nullopt;
    const json& v = j_.at(key);
    if (v.is_array()) {
      if (v.empty()) return std::nullopt;
      return integer_value(key, v.front());
    }
    return integer_value(key, v);
  }
  const std::string& source() const { return source_; }

 private:
  int64_t integer_value(const char* key, const json& v) const {
    if (!v.is_number_integer()) type_error(key, v, "an integer");
    return v.get<int64_t>();
  }
  [[noreturn]] void type_error(const char* key, const json& v, const char* want) const {
    TSP_THROW(IoError, source_, ": field \"", key, "\" must be ", want, ", got ", v.dump());
  }
  const json& j_;
  std::string source_;
};

// RoPE fields. transformers >= 5 writes rope_parameters {"rope_type", "rope_theta", scaling
// parameters}; older versions rope_theta beside rope_scaling {"type" or "rope_type", parameters}.
// Every parameter that is present is either used or refused by name: a silently dropped one
// would change the model's positions.
void read_rope(const json& j, const JsonFields& in, ModelConfigFields& f) {
  auto unsupported = [&](auto... what) {
    TSP_THROW(InvalidArgument, in.source(), ": ", what..., " is not supported by this engine");
  };
  f.rope_theta = in.number_or("rope_theta", f.rope_theta);
  if (const double p = in.number_or("partial_rotary_factor", 1.0); p != 1.0)
    unsupported("partial_rotary_factor ", p, " (RoPE on part of each head)");
  const bool has_params = in.has("rope_parameters"), has_scaling = in.has("rope_scaling");
  // transformers 5 takes a non-empty rope_scaling over rope_parameters; rather than pick one of
  // two different descriptions, a config holding both must hold the same.
  if (has_params && has_scaling && j.at("rope_parameters") != j.at("rope_scaling"))
    TSP_THROW(InvalidArgument, in.source(), ": rope_parameters ", j.at("rope_parameters").dump(),
              " and rope_scaling ", j.at("rope_scaling").dump(), " differ (which one is meant?)");
  const char* key = has_params ? "rope_parameters" : has_scaling ? "rope_scaling" : nullptr;
  if (key == nullptr) return;
  const json& params = j.at(key);
  const std::string where = std::string(in.source()) + ": " + key;
  if (!params.is_object())
    TSP_THROW(IoError, where, " must be an object, got ", params.dump());
  const JsonFields p(params, where);
  std::optional<std::string> type = p.string("rope_type");
  if (!type) type = p.string("type");
  if (!type) {
    // transformers 5 reads a missing type as "default": only theta (or nothing) may be given then.
    for (const auto& [name, value] : params.items())
      if (!value.is_null() && name != "rope_theta" && name != "partial_rotary_factor")
        TSP_THROW(InvalidArgument, where, " has no rope_type (or type) but sets \"", name,
                  "\": ", params.dump());
    type = "default";
  }
  if (p.has("rope_theta")) f.rope_theta = p.number_or("rope_theta", f.rope_theta);
  if (const double prf = p.number_or("partial_rotary_factor", 1.0); prf != 1.0)
    unsupported(key, ".partial_rotary_factor ", prf, " (RoPE on part of each head)");

  using kernels::RopeScalingType;
  kernels::RopeScaling& r = f.rope_scaling;
  std::vector<std::string> known = {"rope_type", "type", "rope_theta", "partial_rotary_factor"};
  if (*type == "default") {
    r.type = RopeScalingType::none;
  } else if (*type == "linear") {
    r.type = RopeScalingType::linear;
    known.insert(known.end(), {"factor"});
  } else if (*type == "llama3") {
    r.type = RopeScalingType::llama3;
    known.insert(known.end(), {"factor", "low_freq_factor", "high_freq_factor",
                               "original_max_position_embeddings"});
  } else if (*type == "yarn") {
    r.type = RopeScalingType::yarn;
    known.insert(known.end(), {"factor", "original_max_position_embeddings", "attention_factor",
                               "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate"});
  } else if (*type == "dynamic") {
    unsupported(key, " type \"dynamic\" (dynamic NTK scaling recomputes theta from the length of ",
                "each forward pass, so a sequence's keys would be rotated with different ",
                "frequencies in training, prefill and each decode step)");
  } else {
    unsupported(key, " type \"", *type, "\" (implemented: default, linear, llama3, yarn)");
  }
  for (const auto& [name, value] : params.items()) {
    if (value.is_null()) continue;
    if (std::find(known.begin(), known.end(), name) == known.end())
      unsupported(key, ".", name, " for RoPE type \"", *type, "\" (", value.dump(), ")");
  }
  auto need = [&](const char* name) {
    if (!p.has(name))
      TSP_THROW(InvalidArgument, where, ": RoPE type \"", *type, "\" needs \"", name, "\"");
    return p.number_or(name, 0.0);
  };
  // The pre-training context: an integer (8192 or 8192.0) from the RoPE object or, as transformers
  // 5 fills it in, from the top-level field; both present and different is refused.
  auto original_context = [&](std::optional<int64_t> fallback) -> int64_t {
    auto integral = [&](const JsonFields& from, const json& object) -> std::optional<int64_t> {
      if (!from.has("original_max_position_embeddings")) return std::nullopt;
      const double v = from.number_or("original_max_position_embeddings", 0.0);
      if (!(v >= 1 && v <= 1e15 && v == std::floor(v)))
        TSP_THROW(InvalidArgument, from.source(), ": original_max_position_embeddings must be a ",
                  "positive integer, got ", object.at("original_max_position_embeddings").dump());
      return static_cast<int64_t>(v);
    };
    const std::optional<int64_t> inner = integral(p, params), outer = integral(in, j);
    if (inner && outer && *inner != *outer)
      TSP_THROW(InvalidArgument, where, ".original_max_position_embeddings ", *inner,
                " differs from the top-level original_max_position_embeddings ", *outer);
    if (inner) return *inner;
    if (outer) return *outer;
    if (fallback) return *fallback;
    TSP_THROW(InvalidArgument, where, ": RoPE type \"", *type, "\" needs \"original_max_position_embeddings\"");
  };
  if (p.has("attention_factor") && !(p.number_or("attention_factor", 0.0) > 0))
    TSP_THROW(InvalidArgument, where, ": attention_factor must be > 0, got ",
              params.at("attention_factor").dump());
  switch (r.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::linear:
      r.factor = need("factor");
      break;
    case RopeScalingType::llama3:
      r.factor = need("factor");
      r.low_freq_factor = need("low_freq_factor");
      r.high_freq_factor = need("high_freq_factor");
      r.original_max_position_embeddings = original_context(std::nullopt);
      break;
    case RopeScalingType::yarn:
      // transformers 5: the pre-training context defaults to max_position_embeddings, the factor
      // to the ratio of the two.
      r.original_max_position_embeddings = original_context(f.max_position_embeddings);
      r.factor = p.number_or("factor", static_cast<double>(f.max_position_embeddings) /
                                           static_cast<double>(r.original_max_position_embeddings));
      r.attention_factor = p.number_or("attention_factor", 0.0);
      r.beta_fast = p.number_or("beta_fast", r.beta_fast);
      r.beta_slow = p.number_or("beta_slow", r.beta_slow);
      r.mscale = p.number_or("mscale", 0.0);
      r.mscale_all_dim = p.number_or("mscale_all_dim", 0.0);
      r.truncate = p.boolean_or("truncate", true);
      break;
  }
}

ModelConfig config_from_object(const json& j, std::string_view source) {
  if (!j.is_object()) TSP_THROW(IoError, source, ": config must be a JSON object, got ", j.type_name());
  const JsonFields in(j, source);
  auto unsupported = [&](auto... what) {
    TSP_THROW(InvalidArgument, source, ": ", what..., " is not supported by this engine");
  };
  ModelType model_type = ModelType::llama;
  if (auto t = in.string("model_type"); t) {
    if (*t == "mistral") model_type = ModelType::mistral;
    else if (*t == "qwen2") model_type = ModelType::qwen2;
    else if (*t != "llama")
      unsupported("model_type \"", *t, "\" (only \"llama\", \"mistral\" and \"qwen2\")");
  }
  // Qwen2's window applies only from layer max_window_layers on, and only when use_sliding_window
  // is set (no released Qwen2/2.5 checkpoint sets it; its sliding_window field is then unused).
  if (model_type == ModelType::qwen2 && in.boolean_or("use_sliding_window", false))
    unsupported("use_sliding_window = true (Qwen2's per-layer window)");
  if (auto a = in.string("hidden_act"); a && *a != "silu") unsupported("hidden_act \"", *a, "\" (only silu)");
  if (in.boolean_or("attention_bias", false)) unsupported("attention_bias = true");
  if (in.boolean_or("mlp_bias", false)) unsupported("mlp_bias = true");
  // Llama-2's transformers code split each projection into pretraining_tp slices when > 1 (its
  // Megatron checkpoints' summation order); the engine computes each product whole.
  if (in.has("pretraining_tp") && in.integer("pretraining_tp") != 1)
    unsupported("pretraining_tp = ", in.integer("pretraining_tp"), " (only 1)");

  ModelConfigFields f;
  f.model_type = model_type;
  // Mistral's window (null or absent: none; Mistral 7B v0.1 has 4096, v0.2 and later null). HF's
  // Llama has no such field and ignores one, and so does this reader.
  if (model_type == ModelType::mistral && in.has("sliding_window")) {
    f.sliding_window = in.integer("sliding_window");
    if (f.sliding_window <= 0)
      TSP_THROW(InvalidArgument, source, ": sliding_window must be positive or null, got ", f.sliding_window);
  }
  f.hidden_size = in.integer("hidden_size");
  f.intermediate_size = in.integer("intermediate_size");
  f.num_hidden_layers = in.integer("num_hidden_layers");
  f.num_attention_heads = in.integer("num_attention_heads");
  f.num_key_value_heads = in.integer_or("num_key_value_heads", f.num_attention_heads);
  f.vocab_size = in.integer("vocab_size");
  f.rms_norm_eps = in.number_or("rms_norm_eps", f.rms_norm_eps);
  f.max_position_embeddings = in.integer_or("max_position_embeddings", f.max_position_embeddings);
  read_rope(j, in, f);
  f.tie_word_embeddings = in.boolean_or("tie_word_embeddings", f.tie_word_embeddings);
  // Newer transformers write "dtype" instead of "torch_dtype".
  std::optional<std::string> dt = in.string("torch_dtype");
  if (!dt) dt = in.string("dtype");
  if (dt) {
    if (*dt == "float32") f.torch_dtype = DType::f32;
    else if (*dt == "bfloat16") f.torch_dtype = DType::bf16;
    else if (*dt == "float16") f.torch_dtype = DType::f16;
    else unsupported("torch_dtype \"", *dt, "\" (only float32, bfloat16 and float16)");
  }
  f.bos_token_id = in.token_id("bos_token_id");
  f.eos_token_id = in.token_id("eos_token_id");
  f.pad_token_id = in.token_id("pad_token_id");

  // head_dim: absent or null means h / H (as in HF); given, it sets d (q and o are H d wide).
  if (in.has("head_dim")) {
    f.head_dim = in.integer("head_dim");
    if (f.head_dim <= 0) TSP_THROW(InvalidArgument, source, ": head_dim must be positive, got ", f.head_dim);
  }

  try {
    ModelConfig config(f);
    return config;
  } catch (const InvalidArgument& e) {
    if (std::string_view(e.what()).starts_with(source)) throw;
    TSP_THROW(InvalidArgument, source, ": ", e.what());
  }
}

}  // namespace

ModelConfig config_from_json(std::string_view json_text, std::string_view source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) TSP_THROW(IoError, source, ": not valid JSON");
  return config_from_object(j, source);
}

ModelConfig load_config(const std::filesystem::path& path) {
  return config_from_json(read_whole_file(path, "model config"), path.string());
}

void save_config(const ModelConfig& config, const std::filesystem::path& path) {
  write_file_atomically(path, config_to_json(config));
}

namespace {

struct NamedPreset {
  const char* name;
  ModelConfigFields fields;
};

// Byte-vocabulary presets use V = 320: the byte tokenizer needs 259 ids (256 bytes + BOS, EOS,
// PAD; see data/byte_tokenizer.h), rounded up to a multiple of 64 so that sharding the vocabulary
// over D ranks divides evenly for every power of two D <= 64. Unused ids never occur in the data.
// F_h = 4h everywhere, as in TSP.md's reference model.
ModelConfigFields byte_model(int64_t h, int64_t layers, int64_t heads, int64_t kv_heads, int64_t max_pos) {
  ModelConfigFields f;
  f.hidden_size = h;
  f.intermediate_size = 4 * h;
  f.num_hidden_layers = layers;
  f.num_attention_heads = heads;
  f.num_key_value_heads = kv_heads;
  f.vocab_size = 320;
  f.rms_norm_eps = 1e-5;
  f.rope_theta = 10000.0;
  f.max_position_embeddings = max_pos;
  f.tie_word_embeddings = false;
  f.torch_dtype = DType::f32;
  return f;
}

std::vector<NamedPreset> all_presets() {
  ModelConfigFields seven_b;
  seven_b.hidden_size = 4096;
  seven_b.intermediate_size = 4 * 4096;  // TSP.md §9: F_h = 4h (Llama-2-7B itself uses 11008)
  seven_b.num_hidden_layers = 32;
  seven_b.num_attention_heads = 32;
  seven_b.num_key_value_heads = 32;
  seven_b.vocab_size = 32000;
  seven_b.rms_norm_eps = 1e-5;
  seven_b.rope_theta = 10000.0;
  seven_b.max_position_embeddings = 131072;  // the study's sequences reach 128K
  seven_b.tie_word_embeddings = false;
  seven_b.torch_dtype = DType::bf16;
  return {
      {"tiny", byte_model(128, 4, 4, 4, 1024)},
      {"tiny-gqa", byte_model(128, 4, 8, 2, 1024)},
      {"small", byte_model(512, 8, 8, 8, 2048)},
      {"medium", byte_model(1024, 16, 16, 16, 4096)},
      {"7b", seven_b},
  };
}

}  // namespace

ModelConfig preset(std::string_view name) {
  std::string known;
  for (const NamedPreset& p : all_presets()) {
    if (p.name == name) return ModelConfig(p.fields);
    known += known.empty() ? "" : ", ";
    known += p.name;
  }
  TSP_THROW(InvalidArgument, "unknown model preset \"", name, "\"; known presets: ", known);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const NamedPreset& p : all_presets()) names.emplace_back(p.name);
  return names;
}

}  // namespace tsp::model
