// check_output_file: outputs are refused before any work when they cannot be written or would
// replace a file the engine did not write; has_generator_marker recognises the engine's files.
#include "tsp/core/output_file.h"

#include <gtest/gtest.h>

#include <string>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/error.h"

namespace tsp {
namespace {

using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

std::string refusal(const std::filesystem::path& p) {
  try {
    check_output_file(p, "--svg", has_generator_marker);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(OutputFile, NewFileInAnExistingDirectoryIsAccepted) {
  ScratchDir dir;
  EXPECT_EQ(refusal(dir / "new.svg"), "");
  EXPECT_FALSE(std::filesystem::exists(dir / "new.svg"));  // checking creates nothing
}

TEST(OutputFile, AUsersFileIsNeverReplaced) {
  ScratchDir dir;
  write_bytes(dir / "notes.svg", "<svg>my own drawing</svg>\n");
  const std::string e = refusal(dir / "notes.svg");
  EXPECT_NE(e.find("not written by tsp"), std::string::npos) << e;
  EXPECT_NE(e.find("--svg"), std::string::npos) << e;
  EXPECT_EQ(read_bytes(dir / "notes.svg"), "<svg>my own drawing</svg>\n");
}

TEST(OutputFile, AFileTheEngineWroteMayBeReplaced) {
  ScratchDir dir;
  write_bytes(dir / "a.svg", "<svg xmlns='x'>\n<!-- generator: tsp -->\n</svg>\n");
  write_bytes(dir / "b.json", "{\n  \"generator\": \"tsp bench\",\n  \"rows\": []\n}\n");
  EXPECT_EQ(refusal(dir / "a.svg"), "");
  EXPECT_EQ(refusal(dir / "b.json"), "");
}

TEST(OutputFile, MissingDirectoryOrADirectoryAtThePathIsRefused) {
  ScratchDir dir;
  EXPECT_NE(refusal(dir / "absent" / "x.svg").find("does not exist"), std::string::npos);
  std::filesystem::create_directory(dir / "d.svg");
  EXPECT_NE(refusal(dir / "d.svg").find("is a directory"), std::string::npos);
}

TEST(OutputFile, GeneratorMarker) {
  EXPECT_TRUE(has_generator_marker("<!-- generator: tsp -->"));
  EXPECT_TRUE(has_generator_marker("{\"generator\": \"tsp plan\"}"));
  EXPECT_FALSE(has_generator_marker("<svg>tsp</svg>"));                     // no marker
  EXPECT_FALSE(has_generator_marker("generator: inkscape; about tsp ....."));  // tsp not the generator
}

}  // namespace
}  // namespace tsp
