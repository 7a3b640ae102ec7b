// Cluster presets with their sources, and the JSON format of a cluster description.
#include "tsp/plan/cluster.h"

#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::plan {

using nlohmann::json;

std::string_view topology_name(IntraNodeTopology t) {
  return t == IntraNodeTopology::full_mesh ? "full_mesh" : "switch";
}

int64_t Cluster::memory_bytes() const {
  return static_cast<int64_t>(memory_per_device_gib * static_cast<double>(int64_t{1} << 30));
}

double Cluster::matmul_flops(bool bf16_math) const {
  return (bf16_math ? matmul_tflops_bf16 : matmul_tflops_fp32) * 1e12;
}

double Cluster::attention_flops(bool bf16_math) const {
  const double t = bf16_math ? attention_tflops_bf16 : attention_tflops_fp32;
  return t > 0 ? t * 1e12 : matmul_flops(bf16_math);
}

void validate(const Cluster& c) {
  const std::string& n = c.name;
  TSP_CHECK(c.devices_per_node >= 1, "cluster ", n, ": devices_per_node must be >= 1, got ",
            c.devices_per_node);
  auto positive = [&](double v, const char* field) {
    TSP_CHECK(v > 0, "cluster ", n, ": ", field, " must be positive, got ", v);
  };
  positive(c.memory_per_device_gib, "memory_per_device_gib");
  positive(c.matmul_tflops_bf16, "matmul_tflops_bf16");
  positive(c.matmul_tflops_fp32, "matmul_tflops_fp32");
  TSP_CHECK(c.attention_tflops_bf16 >= 0 && c.attention_tflops_fp32 >= 0, "cluster ", n,
            ": attention rates must be >= 0 (0: the matmul rate), got ", c.attention_tflops_bf16, " and ",
            c.attention_tflops_fp32);
  positive(c.intra_node_bandwidth_gbs, "intra_node_bandwidth_gbs");
  positive(c.inter_node_bandwidth_gbs, "inter_node_bandwidth_gbs");
  TSP_CHECK(c.intra_node_latency_us >= 0 && c.inter_node_latency_us >= 0, "cluster ", n,
            ": latencies must be >= 0, got ", c.intra_node_latency_us, " and ",
            c.inter_node_latency_us);
  TSP_CHECK(c.inter_node_eager_bytes >= 0 && c.inter_node_eager_bytes <= (int64_t{1} << 40), "cluster ", n,
            ": inter_node_eager_bytes must be in [0, 2^40], got ", c.inter_node_eager_bytes);
}

namespace {

// Achieved fraction of the vendors' dense peak used by both presets: large square GEMMs reach
// 60-80% of peak on these parts; 0.6 is deliberately the same for both.
constexpr double kAchievedFraction = 0.6;

Cluster mi300x() {
  return {
      .name = "mi300x",
      .description =
          "8 x AMD MI300X (192 GB HBM3 each): dense peak 1307.4 TFLOP/s bf16, 163.4 TFLOP/s fp32 "
          "(matrix), x 0.6 achieved; Infinity Fabric full mesh, 7 links per GPU of 64 GB/s per "
          "direction (128 GB/s bidirectional), latency 5 us assumed; 400 Gb/s NIC per GPU "
          "(50 GB/s per direction), latency 10 us assumed",
      .devices_per_node = 8,
      .memory_per_device_gib = 192,
      .matmul_tflops_bf16 = 1307.4 * kAchievedFraction,
      .matmul_tflops_fp32 = 163.4 * kAchievedFraction,
      .intra_node_topology = IntraNodeTopology::full_mesh,
      .intra_node_bandwidth_gbs = 64,
      .intra_node_latency_us = 5,
      .inter_node_bandwidth_gbs = 50,
      .inter_node_latency_us = 10,
  };
}

Cluster h100() {
  return {
      .name = "h100",
      .description =
          "8 x NVIDIA H100 SXM (80 GB HBM3 each): dense peak 989.4 TFLOP/s bf16, 66.9 TFLOP/s "
          "fp32 (no TF32), x 0.6 achieved; NVLink 4 through NVSwitch, 450 GB/s per direction per "
          "GPU (900 GB/s bidirectional), latency 3 us assumed; 400 Gb/s NIC per GPU (50 GB/s "
          "per direction), latency 10 us assumed",
      .devices_per_node = 8,
      .memory_per_device_gib = 80,
      .matmul_tflops_bf16 = 989.4 * kAchievedFraction,
      .matmul_tflops_fp32 = 66.9 * kAchievedFraction,
      .intra_node_topology = IntraNodeTopology::switched,
      .intra_node_bandwidth_gbs = 450,
      .intra_node_latency_us = 3,
      .inter_node_bandwidth_gbs = 50,
      .inter_node_latency_us = 10,
  };
}

const char* const kFields[] = {"name",
                               "description",
                               "devices_per_node",
                               "memory_per_device_gib",
                               "matmul_tflops_bf16",
                               "matmul_tflops_fp32",
                               "intra_node_topology",
                               "intra_node_bandwidth_gbs",
                               "intra_node_latency_us",
                               "inter_node_bandwidth_gbs",
                               "inter_node_latency_us",
                               "inter_node_progress",
                               "inter_node_eager_bytes",
                               "attention_tflops_bf16",
                               "attention_tflops_fp32"};

// Typed access with messages that name the source and the field.
class Fields {
 public:
  Fields(const json& j, std::string_view source) : j_(j), source_(source) {}

  const json& required(const char* key) const {
    if (!j_.contains(key)) {
      TSP_THROW(IoError, source_, ": required field \"", key, "\" is missing");
    }
    return j_.at(key);
  }
  double number(const char* key) const {
    const json& v = required(key);
    if (!v.is_number()) type_error(key, v, "a number");
    return v.get<double>();
  }
  int64_t integer(const char* key) const {
    const json& v = required(key);
    if (!v.is_number_integer()) type_error(key, v, "an integer");
    return v.get<int64_t>();
  }
  bool has(const char* key) const { return j_.contains(key); }
  double number_or(const char* key, double fallback) const {
    if (!j_.contains(key)) return fallback;
    return number(key);
  }
  std::string string_or(const char* key, std::string fallback) const {
    if (!j_.contains(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) type_error(key, v, "a string");
    return v.get<std::string>();
  }
  void reject_unknown() const {
    const std::set<std::string> known(std::begin(kFields), std::end(kFields));
    for (const auto& [key, value] : j_.items()) {
      if (known.count(key) == 0) {
        TSP_THROW(IoError, source_, ": unknown field \"", key, "\"; known fields: name, "
                  "description, devices_per_node, memory_per_device_gib, matmul_tflops_bf16, "
                  "matmul_tflops_fp32, intra_node_topology, intra_node_bandwidth_gbs, "
                  "intra_node_latency_us, inter_node_bandwidth_gbs, inter_node_latency_us, "
                  "inter_node_progress, inter_node_eager_bytes, attention_tflops_bf16, "
                  "attention_tflops_fp32");
      }
    }
  }

 private:
  [[noreturn]] void type_error(const char* key, const json& v, const char* want) const {
    TSP_THROW(IoError, source_, ": field \"", key, "\" must be ", want, ", got ", v.dump());
  }
  const json& j_;
  std::string source_;
};

IntraNodeTopology parse_topology(const std::string& s, std::string_view source) {
  if (s == "switch") return IntraNodeTopology::switched;
  if (s == "full_mesh") return IntraNodeTopology::full_mesh;
  TSP_THROW(InvalidArgument, source, ": field \"intra_node_topology\" must be \"switch\" or "
            "\"full_mesh\", got \"", s, "\"");
}

bool parse_progress(const std::string& s, std::string_view source) {
  if (s == "background") return true;
  if (s == "in_calls") return false;
  TSP_THROW(InvalidArgument, source, ": field \"inter_node_progress\" must be \"background\" or "
            "\"in_calls\", got \"", s, "\"");
}

}  // namespace

Cluster cluster_preset(std::string_view name) {
  if (name == "mi300x") return mi300x();
  if (name == "h100") return h100();
  TSP_THROW(InvalidArgument, "unknown cluster \"", name, "\"; presets: mi300x, h100; `local` "
            "(written by `tsp plan --calibrate`); or the path of a cluster JSON file");
}

std::vector<std::string> cluster_preset_names() { return {"mi300x", "h100"}; }

Cluster cluster_from_json(std::string_view text, std::string_view source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    TSP_THROW(IoError, source, ": malformed JSON: ", e.what());
  }
  if (!j.is_object()) TSP_THROW(IoError, source, ": a cluster must be a JSON object, got ", j.type_name());
  const Fields in(j, source);
  in.reject_unknown();
  Cluster c;
  c.name = in.string_or("name", std::string(source));
  c.description = in.string_or("description", "");
  c.devices_per_node = in.integer("devices_per_node");
  c.memory_per_device_gib = in.number("memory_per_device_gib");
  c.matmul_tflops_bf16 = in.number("matmul_tflops_bf16");
  c.matmul_tflops_fp32 = in.number("matmul_tflops_fp32");
  c.attention_tflops_bf16 = in.number_or("attention_tflops_bf16", 0);
  c.attention_tflops_fp32 = in.number_or("attention_tflops_fp32", 0);
  c.intra_node_topology = parse_topology(in.string_or("intra_node_topology", "switch"), source);
  c.intra_node_bandwidth_gbs = in.number("intra_node_bandwidth_gbs");
  c.intra_node_latency_us = in.number("intra_node_latency_us");
  c.inter_node_bandwidth_gbs = in.number("inter_node_bandwidth_gbs");
  c.inter_node_latency_us = in.number("inter_node_latency_us");
  c.inter_node_background_progress = parse_progress(in.string_or("inter_node_progress", "background"), source);
  if (in.has("inter_node_eager_bytes")) c.inter_node_eager_bytes = in.integer("inter_node_eager_bytes");
  try {
    validate(c);
  } catch (const InvalidArgument& e) {
    TSP_THROW(InvalidArgument, source, ": ", e.what());
  }
  return c;
}

std::string cluster_to_json(const Cluster& c) {
  json j;
  j["name"] = c.name;
  j["description"] = c.description;
  j["devices_per_node"] = c.devices_per_node;
  j["memory_per_device_gib"] = c.memory_per_device_gib;
  j["matmul_tflops_bf16"] = c.matmul_tflops_bf16;
  j["matmul_tflops_fp32"] = c.matmul_tflops_fp32;
  if (c.attention_tflops_bf16 > 0) j["attention_tflops_bf16"] = c.attention_tflops_bf16;
  if (c.attention_tflops_fp32 > 0) j["attention_tflops_fp32"] = c.attention_tflops_fp32;
  j["intra_node_topology"] = std::string(topology_name(c.intra_node_topology));
  j["intra_node_bandwidth_gbs"] = c.intra_node_bandwidth_gbs;
  j["intra_node_latency_us"] = c.intra_node_latency_us;
  j["inter_node_bandwidth_gbs"] = c.inter_node_bandwidth_gbs;
  j["inter_node_latency_us"] = c.inter_node_latency_us;
  j["inter_node_progress"] = c.inter_node_background_progress ? "background" : "in_calls";
  if (!c.inter_node_background_progress) j["inter_node_eager_bytes"] = c.inter_node_eager_bytes;
  return j.dump(2) + "\n";
}

Cluster load_cluster(const std::filesystem::path& path) {
  return cluster_from_json(read_whole_file(path, "cluster description"), path.string());
}

void save_cluster(const Cluster& c, const std::filesystem::path& path) {
  validate(c);
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  write_file_atomically(path, cluster_to_json(c));
}

std::filesystem::path default_local_cluster_path() {
  if (const char* p = std::getenv("TSP_LOCAL_CLUSTER"); p != nullptr && *p != '\0') return p;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    return std::filesystem::path(x) / "tsp" / "local_cluster.json";
  }
  const char* home = std::getenv("HOME");
  TSP_CHECK(home != nullptr && *home != '\0', "cannot locate the calibrated cluster file: "
            "neither TSP_LOCAL_CLUSTER, XDG_CACHE_HOME nor HOME is set");
  return std::filesystem::path(home) / ".cache" / "tsp" / "local_cluster.json";
}

Cluster resolve_cluster(std::string_view name) {
  if (name == "local") {
    const std::filesystem::path p = default_local_cluster_path();
    if (!std::filesystem::exists(p)) {
      TSP_THROW(IoError, "no calibrated cluster at ", p.string(), ": run `tsp plan --calibrate` "
                "first (or pass --cluster FILE.json)");
    }
    return load_cluster(p);
  }
  for (const std::string& preset : cluster_preset_names()) {
    if (name == preset) return cluster_preset(name);
  }
  const std::filesystem::path p(name);
  if (p.extension() == ".json" || std::filesystem::exists(p)) return load_cluster(p);
  return cluster_preset(name);  // throws: unknown name
}

}  // namespace tsp::plan
