// The main of the fuzz targets in the normal build: runs LLVMFuzzerTestOneInput once over every
// file of the directories (or files) given, so ctest replays the seeds and the committed crashes.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// Regular files of `dir` (or `dir` itself), sorted, skipping dotfiles (.gitkeep of an empty
// crash directory).
std::vector<std::filesystem::path> inputs_of(const std::filesystem::path& arg) {
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_regular_file(arg)) return {arg};
  for (const auto& e : std::filesystem::directory_iterator(arg)) {
    if (e.is_regular_file() && e.path().filename().string().rfind('.', 0) != 0) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR|FILE... (replays every input once)\n", argv[0]);
    return 2;
  }
  size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    // A directory that does not exist is a typo in the test, not an empty corpus.
    if (!std::filesystem::exists(argv[i])) {
      std::fprintf(stderr, "replay: %s does not exist\n", argv[i]);
      return 2;
    }
    size_t here = 0;
    for (const auto& file : inputs_of(argv[i])) {
      std::ifstream in(file, std::ios::binary);
      const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      std::fprintf(stderr, "replay: %s (%zu bytes)\n", file.c_str(), bytes.size());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++here;
    }
    std::printf("replay: %zu inputs from %s\n", here, argv[i]);
    replayed += here;
  }
  // The first argument is the seed corpus: an empty one means the seed writer broke.
  if (inputs_of(argv[1]).empty()) {
    std::fprintf(stderr, "replay: no inputs in %s (the seed corpus must not be empty)\n", argv[1]);
    return 1;
  }
  std::printf("replay: %zu inputs, no crash\n", replayed);
  return 0;
}
