// Output files checked before the work that fills them (see output_file.h).
#include "tsp/core/output_file.h"

#include <unistd.h>

#include <fstream>
#include <string>

#include "tsp/core/check.h"

namespace tsp {

void check_output_file(const std::filesystem::path& path, std::string_view flag,
                       const std::function<bool(std::string_view head)>& written_by_tsp) {
  namespace fs = std::filesystem;
  TSP_CHECK(!path.empty(), flag, ": empty path");
  std::error_code ec;
  TSP_CHECK(!fs::is_directory(path, ec), flag, " ", path.string(), " is a directory; give a file name");
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  TSP_CHECK(fs::is_directory(dir, ec), flag, " ", path.string(), ": directory ", dir.string(), " does not exist");
  TSP_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, flag, " ", path.string(), ": directory ", dir.string(),
            " is not writable");
  if (!fs::exists(path, ec)) return;
  std::ifstream in(path, std::ios::binary);
  TSP_CHECK(in.good(), flag, " ", path.string(), " exists and cannot be read; refusing to replace it");
  std::string head(64 << 10, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  TSP_CHECK(written_by_tsp(head), flag, " ", path.string(),
            " exists and was not written by tsp; refusing to replace it (remove it or choose another name)");
}

bool has_generator_marker(std::string_view head) {
  const size_t g = head.find("generator");
  if (g == std::string_view::npos) return false;
  const size_t t = head.find("tsp", g);
  return t != std::string_view::npos && t - g < 16;
}

}  // namespace tsp
