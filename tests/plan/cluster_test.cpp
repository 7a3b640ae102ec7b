// Cluster presets, the JSON format and its error messages.
#include "tsp/plan/cluster.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "scratch_dir.h"
#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

const char* const kValid = R"({
  "name": "lab",
  "devices_per_node": 4,
  "memory_per_device_gib": 24,
  "matmul_tflops_bf16": 100,
  "matmul_tflops_fp32": 25.5,
  "intra_node_topology": "full_mesh",
  "intra_node_bandwidth_gbs": 32,
  "intra_node_latency_us": 2,
  "inter_node_bandwidth_gbs": 12.5,
  "inter_node_latency_us": 8
})";

template <class E>
std::string error_of(const std::string& json) {
  try {
    cluster_from_json(json, "lab.json");
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << json;
  return "";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(Cluster, ParsesEveryField) {
  const Cluster c = cluster_from_json(kValid, "lab.json");
  EXPECT_EQ(c.name, "lab");
  EXPECT_EQ(c.devices_per_node, 4);
  EXPECT_EQ(c.memory_bytes(), int64_t{24} << 30);
  EXPECT_DOUBLE_EQ(c.matmul_flops(true), 100e12);
  EXPECT_DOUBLE_EQ(c.matmul_flops(false), 25.5e12);
  EXPECT_EQ(c.intra_node_topology, IntraNodeTopology::full_mesh);
  EXPECT_DOUBLE_EQ(c.inter_node_bandwidth_gbs, 12.5);
}

TEST(Cluster, InterNodeProgressIsOptionalAndChecked) {
  EXPECT_TRUE(cluster_from_json(kValid, "lab.json").inter_node_background_progress);
  const std::string in_calls = replace(kValid, "\"inter_node_latency_us\": 8",
                                       "\"inter_node_latency_us\": 8, \"inter_node_progress\": \"in_calls\"");
  const Cluster c = cluster_from_json(in_calls, "lab.json");
  EXPECT_FALSE(c.inter_node_background_progress);
  EXPECT_FALSE(cluster_from_json(cluster_to_json(c), "x").inter_node_background_progress);
  EXPECT_EQ(c.inter_node_eager_bytes, 65536);  // Open MPI's btl_tcp_eager_limit
  const Cluster eager = cluster_from_json(replace(in_calls, "\"in_calls\"", "\"in_calls\", \"inter_node_eager_bytes\": 4096"), "x");
  EXPECT_EQ(eager.inter_node_eager_bytes, 4096);
  EXPECT_EQ(cluster_from_json(cluster_to_json(eager), "x").inter_node_eager_bytes, 4096);
  EXPECT_NE(error_of<InvalidArgument>(replace(in_calls, "\"in_calls\"", "\"in_calls\", \"inter_node_eager_bytes\": -1"))
                .find("inter_node_eager_bytes must be in [0, 2^40]"),
            std::string::npos);
  const std::string bad = replace(kValid, "\"inter_node_latency_us\": 8",
                                  "\"inter_node_latency_us\": 8, \"inter_node_progress\": \"sometimes\"");
  EXPECT_NE(error_of<InvalidArgument>(bad).find("\"inter_node_progress\" must be \"background\" or \"in_calls\""),
            std::string::npos);
}

TEST(Cluster, AttentionRatesAreOptionalAndDefaultToTheMatmulRates) {
  const Cluster plain = cluster_from_json(kValid, "lab.json");
  EXPECT_DOUBLE_EQ(plain.attention_flops(false), 25.5e12);
  EXPECT_DOUBLE_EQ(plain.attention_flops(true), 100e12);
  const std::string with = replace(kValid, "\"matmul_tflops_fp32\": 25.5",
                                   "\"matmul_tflops_fp32\": 25.5, \"attention_tflops_fp32\": 5");
  const Cluster c = cluster_from_json(with, "lab.json");
  EXPECT_DOUBLE_EQ(c.attention_flops(false), 5e12);
  EXPECT_DOUBLE_EQ(c.attention_flops(true), 100e12);  // bf16 not given: its matmul rate
  EXPECT_DOUBLE_EQ(cluster_from_json(cluster_to_json(c), "x").attention_tflops_fp32, 5);
  const std::string negative = replace(kValid, "\"matmul_tflops_fp32\": 25.5",
                                       "\"matmul_tflops_fp32\": 25.5, \"attention_tflops_fp32\": -1");
  EXPECT_NE(error_of<InvalidArgument>(negative).find("attention rates must be >= 0"), std::string::npos);
}

TEST(Cluster, PresetsRoundTripThroughJson) {
  for (const std::string& name : cluster_preset_names()) {
    const Cluster p = cluster_preset(name);
    const Cluster q = cluster_from_json(cluster_to_json(p), "x");
    EXPECT_EQ(q.name, p.name);
    EXPECT_EQ(q.devices_per_node, 8);
    EXPECT_DOUBLE_EQ(q.matmul_tflops_bf16, p.matmul_tflops_bf16);
    EXPECT_EQ(q.intra_node_topology, p.intra_node_topology);
    EXPECT_DOUBLE_EQ(q.inter_node_bandwidth_gbs, 50);  // 400 Gb/s NIC per GPU
  }
  EXPECT_DOUBLE_EQ(cluster_preset("mi300x").memory_per_device_gib, 192);
  EXPECT_DOUBLE_EQ(cluster_preset("h100").memory_per_device_gib, 80);
  EXPECT_THROW(cluster_preset("tpu"), InvalidArgument);
}

TEST(Cluster, MissingFieldIsNamed) {
  const std::string msg = error_of<IoError>(replace(kValid, R"("devices_per_node": 4,)", ""));
  EXPECT_NE(msg.find("lab.json: required field \"devices_per_node\" is missing"), std::string::npos)
      << msg;
}

TEST(Cluster, BadNumbersAreNamed) {
  std::string msg = error_of<IoError>(replace(kValid, "100", "\"fast\""));
  EXPECT_NE(msg.find("lab.json: field \"matmul_tflops_bf16\" must be a number, got \"fast\""),
            std::string::npos) << msg;
  msg = error_of<IoError>(replace(kValid, "\"devices_per_node\": 4", "\"devices_per_node\": 4.5"));
  EXPECT_NE(msg.find("\"devices_per_node\" must be an integer, got 4.5"), std::string::npos) << msg;
  msg = error_of<InvalidArgument>(replace(kValid, "24", "-1"));
  EXPECT_NE(msg.find("lab.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("memory_per_device_gib must be positive, got -1"), std::string::npos) << msg;
  msg = error_of<InvalidArgument>(replace(kValid, "full_mesh", "torus"));
  EXPECT_NE(msg.find("\"intra_node_topology\" must be \"switch\" or \"full_mesh\", got \"torus\""),
            std::string::npos) << msg;
}

TEST(Cluster, MalformedJsonUnknownFieldsAndWrongShape) {
  EXPECT_NE(error_of<IoError>("{\"devices_per_node\": ").find("lab.json: malformed JSON"),
            std::string::npos);
  EXPECT_NE(error_of<IoError>("[1, 2]").find("must be a JSON object"), std::string::npos);
  const std::string msg = error_of<IoError>(replace(kValid, "\"name\"", "\"nmae\""));
  EXPECT_NE(msg.find("unknown field \"nmae\""), std::string::npos) << msg;
}

TEST(Cluster, FilesSaveLoadAndMissingFilesAreNamed) {
  tsp::testing::ScratchDir dir;
  const auto path = dir / "sub" / "c.json";
  save_cluster(cluster_preset("h100"), path);
  EXPECT_EQ(load_cluster(path).name, "h100");
  EXPECT_EQ(resolve_cluster(path.string()).name, "h100");
  try {
    load_cluster(dir / "missing.json");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_cluster((dir / "nope.json").string()), IoError);
}

TEST(Cluster, LocalReadsTheCalibratedFile) {
  tsp::testing::ScratchDir dir;
  const auto path = dir / "local.json";
  ::setenv("TSP_LOCAL_CLUSTER", path.c_str(), 1);
  EXPECT_EQ(default_local_cluster_path(), path);
  try {
    resolve_cluster("local");
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("tsp plan --calibrate"), std::string::npos) << e.what();
  }
  Cluster c = cluster_from_json(kValid, "x");
  c.name = "local";
  save_cluster(c, path);
  EXPECT_EQ(resolve_cluster("local").devices_per_node, 4);
  ::unsetenv("TSP_LOCAL_CLUSTER");
}

}  // namespace
}  // namespace tsp::plan
