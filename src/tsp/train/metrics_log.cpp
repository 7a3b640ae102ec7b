// Reading back a `tsp train --metrics` JSON-lines file; the fields are those metrics.cpp writes
// (docs/training.md, "Metrics file").
#include "tsp/train/metrics_log.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::train {

MetricsLog read_metrics_log(const std::filesystem::path& path) {
  using nlohmann::json;
  MetricsLog log;
  std::istringstream in(read_whole_file(path, "metrics file"));
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      TSP_THROW(InvalidArgument, path.string(), ":", line_no, ": not a JSON object: ", e.what());
    }
    try {
      const std::string type = j.value("type", "");
      if (type == "train") {
        LoggedStep& s = log.steps[j.at("step").get<int64_t>()];
        s.loss = j.at("loss").get<double>();
        s.tokens = j.value("tokens", 0.0);  // tsp plot needs it; tsp compare does not
        s.tokens_per_s = j.at("tokens_per_s").get<double>();
        s.peak_bytes = j.at("peak_bytes").get<int64_t>();
        s.comm_bytes_sent = j.value("comm_bytes_sent", int64_t{0});
      } else if (type == "val") {
        log.val_loss[j.at("step").get<int64_t>()] = j.at("val_loss").get<double>();
      } else if (type == "memory") {
        if (j.at("rank").get<int64_t>() == 0) log.ranks.clear();  // a later run in the same file
        LoggedRankMemory r;
        for (const auto& [k, v] : j.at("peak_bytes").items()) r.peak_bytes[k] = v.get<int64_t>();
        r.peak_rss_bytes = j.at("peak_rss_bytes").get<int64_t>();
        r.bytes_sent_per_step = j.at("bytes_sent_per_step").get<int64_t>();
        log.ranks.push_back(std::move(r));
      }
    } catch (const json::exception& e) {
      TSP_THROW(InvalidArgument, path.string(), ":", line_no, ": malformed metrics record: ", e.what());
    }
  }
  if (log.steps.empty())
    TSP_THROW(InvalidArgument, path.string(), " holds no \"train\" records (a tsp train --metrics file?)");
  return log;
}

}  // namespace tsp::train
