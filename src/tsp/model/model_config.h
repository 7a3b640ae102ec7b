// ModelConfig: the shape of a Llama-style decoder with the Hugging Face config.json field names,
// validated at construction; named presets, JSON read/write and the parameter-count formulas of TSP.md §9.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/dtype.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/rope.h"

namespace tsp::model {

// The architectures read and written: Llama, Mistral (Llama plus an optional sliding window) and
// Qwen2 (Llama plus biases on the q, k and v projections).
enum class ModelType : uint8_t { llama, mistral, qwen2 };
// "llama" / "mistral" / "qwen2", as config.json's model_type.
std::string_view model_type_name(ModelType t);

// The raw fields, named as in HF's LlamaConfig. Defaults are HF's where HF has one. Build a
// ModelConfig from this to get validation and derived sizes.
struct ModelConfigFields {
  int64_t hidden_size = 0;               // h
  int64_t intermediate_size = 0;         // F_h
  int64_t num_hidden_layers = 0;         // L
  int64_t num_attention_heads = 0;       // H
  int64_t num_key_value_heads = 0;       // H_kv, > 0; config.json without it means H (as in HF)
  int64_t head_dim = 0;                  // d; 0 means h / H (HF's default when absent or null)
  ModelType model_type = ModelType::llama;
  // Mistral's sliding_window W: a query sees only the keys 0 <= q - k < W. 0 (or null): none.
  int64_t sliding_window = 0;
  int64_t vocab_size = 0;                // V
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // rope_scaling (or transformers >= 5's rope_parameters): linear, llama3 or yarn; none by default.
  kernels::RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  DType torch_dtype = DType::f32;        // storage dtype of the checkpoint: f32, bf16 or f16
  // Optional tokenizer ids; written only when set (HF reads them for generation).
  std::optional<int64_t> bos_token_id = std::nullopt;
  std::optional<int64_t> eos_token_id = std::nullopt;
  std::optional<int64_t> pad_token_id = std::nullopt;
};

// Largest accepted size fields (docs/formats.md). Far above any published Llama (405B: h 16384,
// F 53248, L 126, V 128256, 128K positions), and small enough that every derived count
// (parameters, bytes per parameter) fits in int64: at the caps a model has < 2^62 parameters.
struct ModelConfigLimits {
  static constexpr int64_t hidden_size = int64_t{1} << 20;              // 1,048,576
  static constexpr int64_t intermediate_size = int64_t{1} << 22;        // 4,194,304
  static constexpr int64_t num_hidden_layers = int64_t{1} << 16;        // 65,536
  static constexpr int64_t num_attention_heads = int64_t{1} << 16;      // 65,536 (and kv heads)
  static constexpr int64_t vocab_size = int64_t{1} << 24;               // 16,777,216
  static constexpr int64_t max_position_embeddings = int64_t{1} << 30;  // 1,073,741,824
};

// A validated config. Every ModelConfig that exists satisfies: all sizes positive and at most
// ModelConfigLimits,
// head_dim even (and, when not given, hidden_size % num_attention_heads == 0),
// num_attention_heads % num_key_value_heads == 0,
// rms_norm_eps > 0, rope_theta > 0, torch_dtype in {f32, bf16, f16}. To change a field, copy
// fields(), edit, and construct again.
class ModelConfig {
 public:
  // Throws InvalidArgument naming the offending values.
  explicit ModelConfig(const ModelConfigFields& fields);

  const ModelConfigFields& fields() const { return f_; }
  int64_t hidden_size() const { return f_.hidden_size; }
  int64_t intermediate_size() const { return f_.intermediate_size; }
  int64_t num_hidden_layers() const { return f_.num_hidden_layers; }
  int64_t num_attention_heads() const { return f_.num_attention_heads; }
  int64_t num_key_value_heads() const { return f_.num_key_value_heads; }
  int64_t vocab_size() const { return f_.vocab_size; }
  double rms_norm_eps() const { return f_.rms_norm_eps; }
  double rope_theta() const { return f_.rope_theta; }
  const kernels::RopeScaling& rope_scaling() const { return f_.rope_scaling; }
  // theta and scaling as every RoPE table of every layout and the decoder builds it.
  kernels::RopeOptions rope_options() const { return {.theta = f_.rope_theta, .scaling = f_.rope_scaling}; }
  int64_t max_position_embeddings() const { return f_.max_position_embeddings; }
  bool tie_word_embeddings() const { return f_.tie_word_embeddings; }
  ModelType model_type() const { return f_.model_type; }
  // The attention window of every layer (0: full causal attention).
  int64_t sliding_window() const { return f_.sliding_window; }
  // Qwen2: q_proj, k_proj and v_proj carry biases ([H d], [H_kv d], [H_kv d]), added to the
  // projections before RoPE; o_proj and the MLP have none.
  bool qkv_bias() const { return f_.model_type == ModelType::qwen2; }
  // Causal, with the window: the options of every attention call of every layout.
  kernels::FlashAttentionOptions attention_options() const { return {.causal = true, .window = f_.sliding_window}; }
  DType torch_dtype() const { return f_.torch_dtype; }
  // The dtype a checkpoint of this config is computed in when nothing else is asked for: its own,
  // except float16 (a storage format only here), which is widened exactly to f32.
  DType compute_dtype() const { return f_.torch_dtype == DType::f16 ? DType::f32 : f_.torch_dtype; }

  // Derived sizes: the only place they are computed.
  // d: config.json's head_dim where given (Gemma, Qwen3, Mistral-Nemo: H d != h), else h / H.
  int64_t head_dim() const { return f_.head_dim > 0 ? f_.head_dim : f_.hidden_size / f_.num_attention_heads; }
  int64_t q_dim() const { return f_.num_attention_heads * head_dim(); }               // H d (h unless head_dim is explicit)
  int64_t kv_dim() const { return f_.num_key_value_heads * head_dim(); }              // H_kv * d
  int64_t gqa_group_size() const { return f_.num_attention_heads / f_.num_key_value_heads; }

  // Parameter counts (elements). TSP.md §9: attention (2 + 2 H_kv/H) h^2 (2 h (H d + H_kv d) in
  // general), MLP 3 h F_h.
  int64_t attention_params_per_layer() const;  // q, k, v, o projections
  int64_t mlp_params_per_layer() const;        // gate, up, down projections
  int64_t matrix_params_per_layer() const;     // attention + MLP: TSP.md §9's "parameters per layer"
  int64_t bias_params_per_layer() const;       // q, k, v biases: H d + 2 H_kv d (Qwen2), else 0
  int64_t norm_params_per_layer() const;       // input_layernorm + post_attention_layernorm = 2h
  int64_t params_per_layer() const;            // matrix + bias + norm
  int64_t embedding_params() const;            // V h (model.embed_tokens)
  int64_t lm_head_params() const;              // V h, or 0 when tied
  int64_t non_embedding_params() const;        // L * params_per_layer + h (final norm)
  int64_t total_params() const;                // non_embedding + embedding + lm_head

  // One-line summary: "h=128 L=4 H=4 H_kv=4 d=32 F=512 V=320 params=1.06M".
  std::string summary() const;

  friend bool operator==(const ModelConfig& a, const ModelConfig& b);

 private:
  ModelConfigFields f_;
};

// The torch_dtype string of config.json: "float32", "bfloat16" or "float16".
std::string torch_dtype_name(DType t);

// HF config.json text: every field above plus "architectures": ["LlamaForCausalLM"] and
// "model_type": "llama" (Mistral: "MistralForCausalLM", "mistral", "sliding_window"; Qwen2:
// "Qwen2ForCausalLM", "qwen2", "use_sliding_window": false), "hidden_act": "silu", "head_dim",
// "attention_bias": false (not for Qwen2, whose biases are implied by its type), "mlp_bias": false.
// Pretty-printed, keys sorted.
std::string config_to_json(const ModelConfig& config);
// Parses config.json text. Malformed JSON or wrong field types -> IoError naming `source`;
// valid JSON with invalid values -> InvalidArgument naming `source` and the values. RoPE comes
// from rope_theta / rope_scaling or from transformers >= 5's rope_parameters (its rope_theta
// first). Rejects features the engine does not implement, by name (RoPE types other than default,
// linear, llama3 and yarn, unknown RoPE parameters, partial_rotary_factor != 1, attention/mlp
// bias, non-silu act, model_type other than "llama", "mistral" and "qwen2", Qwen2's
// use_sliding_window = true). head_dim may differ from h/H (q and o are then H d wide). A Mistral
// config's sliding_window masks keys outside the window; Llama and Qwen2 (without
// use_sliding_window) have none (HF ignores the field there). Unknown extra fields are ignored.
ModelConfig config_from_json(std::string_view json_text, std::string_view source = "<string>");

// File versions; the writer is atomic (temporary file + fsync + rename).
ModelConfig load_config(const std::filesystem::path& path);
void save_config(const ModelConfig& config, const std::filesystem::path& path);

// Named presets (see docs/formats.md): "tiny" (the default; trains in about a minute on one
// core), "tiny-gqa", "small", "medium", "7b" (TSP.md §9 reference model, for the planner).
ModelConfig preset(std::string_view name);
std::vector<std::string> preset_names();
inline constexpr std::string_view kDefaultPreset = "tiny";

}  // namespace tsp::model
