// Crafted training-state files for the tests: rewrite the __metadata__ of a safetensors file (the
// state JSON, the format) and keep the file well-formed, as a user editing it by hand would.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

namespace tsp::testing {

// Calls edit(metadata) on the file's "__metadata__" object (string values) and writes the file
// back with the new header length; the tensor offsets are relative to the data section, so the
// data stays valid.
inline void edit_safetensors_metadata(const std::filesystem::path& file,
                                      const std::function<void(nlohmann::json& metadata)>& edit) {
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  edit(header["__metadata__"]);
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  out += text;
  out += bytes.substr(8 + n);
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(out.data(), static_cast<std::streamsize>(out.size()));
}

// Edits the parsed "state" JSON (step, tokens_seen, loader, run, model_config, ...) in place.
inline void edit_train_state_json(const std::filesystem::path& file,
                                  const std::function<void(nlohmann::json& state)>& edit) {
  edit_safetensors_metadata(file, [&](nlohmann::json& meta) {
    nlohmann::json state = nlohmann::json::parse(meta["state"].get<std::string>());
    edit(state);
    meta["state"] = state.dump();
  });
}

}  // namespace tsp::testing
