// Output files checked before the work that fills them: the place must be writable, and a file
// already there is replaced only when the engine wrote it (a user's file is never overwritten).
#pragma once

#include <filesystem>
#include <functional>
#include <string_view>

namespace tsp {

// Throws InvalidArgument naming `flag` and `path`, before any work, when: `path` is a directory;
// its directory does not exist or is not writable; or a file exists there and `written_by_tsp`
// (given the file's first 64 KiB) does not recognise it as one this program wrote. Write the file
// afterwards with write_file_atomically (temporary + rename), so a failed run leaves it untouched.
void check_output_file(const std::filesystem::path& path, std::string_view flag,
                       const std::function<bool(std::string_view head)>& written_by_tsp);

// The marker the engine puts near the start of the text files it writes for people (charts,
// reports): "generator: tsp <what>". has_generator_marker looks for "generator" then "tsp" in the
// head, in either an XML comment (SVG) or a JSON key ("generator": "tsp bench").
bool has_generator_marker(std::string_view head);

}  // namespace tsp
