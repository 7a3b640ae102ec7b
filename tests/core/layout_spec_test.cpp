// The layout registry: names, parsing (planner names and the command-line flag form), kind rules.
#include "tsp/core/layout_spec.h"

#include <gtest/gtest.h>

#include "tsp/core/error.h"

namespace tsp {
namespace {

TEST(LayoutSpec, ParsesAndNamesEveryKind) {
  EXPECT_EQ(parse_layout("tsp8"), tsp_layout(8));
  EXPECT_EQ(parse_layout("tp8"), tp_layout(8));
  EXPECT_EQ(parse_layout("tp4xsp2"), tp_sp_layout(4, 2));
  EXPECT_EQ(parse_layout("tp2sp4"), tp_sp_layout(2, 4));
  EXPECT_EQ(parse_layout("sp8"), sp_layout(8));
  EXPECT_EQ(parse_layout("dp8"), dp_layout(8));
  EXPECT_EQ(parse_layout("fsdp-sp8"), fsdp_sp_layout(8));
  EXPECT_EQ(parse_layout("DP128xTSP8"), tsp_layout(8, 128));
  EXPECT_EQ(parse_layout("dp2.pp2.tp4"), tp_layout(4, 2, 2));
  for (const LayoutSpec& l : {tsp_layout(8), tp_sp_layout(4, 2), fsdp_sp_layout(8, 2), dp_layout(8),
                          tsp_layout(8, 128), tp_layout(4, 2, 2), dp_layout(1), dp_layout(2, 2)}) {
    EXPECT_EQ(parse_layout(l.name()), l) << l.name();
  }
  EXPECT_EQ(tsp_layout(8, 128).name(), "dp128xtsp8");
  EXPECT_EQ(tp_sp_layout(4, 2).name(), "tp4xsp2");
  EXPECT_EQ(tp_sp_layout(4, 2).devices(), 8);
  EXPECT_EQ(tsp_layout(8, 128).devices(), 1024);
}

TEST(LayoutSpec, RejectsMalformedNames) {
  for (const char* bad : {"", "tsp", "foo8", "tsp8xtp2", "tp2xtp2", "tsp0", "fsdp-sp4xsp2", "tsp8x"}) {
    EXPECT_THROW(parse_layout(bad), InvalidArgument) << bad;
  }
}

TEST(LayoutSpec, SingleIsOneReplicatedRank) {
  EXPECT_EQ(parse_layout("single"), dp_layout(1));
  EXPECT_EQ(layout_from_flags({}), dp_layout(1));
  EXPECT_EQ(layout_from_flags({.layout = "single"}).devices(), 1);
}

TEST(LayoutSpec, FlagFormAndNameFormAgree) {
  EXPECT_EQ(layout_from_flags({.layout = "tsp", .tsp = 4, .dp = 2}), parse_layout("dp2xtsp4"));
  EXPECT_EQ(layout_from_flags({.layout = "tp+sp", .tp = 2, .sp = 2}), parse_layout("tp2xsp2"));
  EXPECT_EQ(layout_from_flags({.layout = "fsdp-sp", .sp = 4}), parse_layout("fsdp-sp4"));
  EXPECT_EQ(layout_from_flags({.layout = "dp", .dp = 3}), parse_layout("dp3"));
  EXPECT_EQ(layout_from_flags({.layout = "tp", .tp = 2}), parse_layout("tp2"));
  EXPECT_EQ(layout_from_flags({.layout = "sp", .sp = 2, .dp = 2}), parse_layout("dp2xsp2"));
  EXPECT_EQ(layout_from_flags({.layout = "dp2xtsp4"}), tsp_layout(4, 2));
  for (const char* kind : {"single", "tsp", "tp", "sp", "tp+sp", "dp", "fsdp-sp"})
    EXPECT_TRUE(is_layout_kind_name(kind)) << kind;
  EXPECT_FALSE(is_layout_kind_name("tsp2"));
}

// One message per misuse, naming the flag that does not fit.
TEST(LayoutSpec, FlagFormRefusesDegreesTheKindDoesNotUse) {
  const auto message = [](const LayoutFlags& f) {
    try {
      (void)layout_from_flags(f);
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({.layout = "tsp", .tp = 2}).find("does not use --tp"), std::string::npos);
  EXPECT_NE(message({.layout = "tp", .sp = 2}).find("does not use --sp"), std::string::npos);
  EXPECT_NE(message({.layout = "single", .dp = 2}).find("does not use --dp"), std::string::npos);
  EXPECT_NE(message({.layout = "fsdp-sp", .tsp = 2}).find("does not use --tsp"), std::string::npos);
  EXPECT_NE(message({.layout = "tsp", .tsp = 0}).find("must be >= 1"), std::string::npos);
  EXPECT_NE(message({.layout = "tsp2", .dp = 2}).find("names its degrees"), std::string::npos);
  EXPECT_NE(message({.layout = "single", .pp = 2}).find("does not use --pp"), std::string::npos);
  EXPECT_NE(message({.layout = "dp2xpp2xtsp2", .pp = 2}).find("names its degrees"), std::string::npos);
  EXPECT_EQ(layout_from_flags({.layout = "tsp", .tsp = 2, .dp = 2, .pp = 2}), parse_layout("dp2xpp2xtsp2"));
  EXPECT_EQ(layout_from_flags({.layout = "dp", .pp = 2}), parse_layout("pp2"));
  EXPECT_NE(message({.layout = "bogus"}).find("--layout must be single, tsp"), std::string::npos);
}

}  // namespace
}  // namespace tsp
