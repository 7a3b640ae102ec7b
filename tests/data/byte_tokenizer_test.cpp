// Tests of the byte tokenizer: UTF-8 and arbitrary-byte round trips, special ids, rendering.
#include "tsp/data/byte_tokenizer.h"

#include <gtest/gtest.h>

#include "tsp/core/error.h"

namespace tsp::data {
namespace {

TEST(ByteTokenizer, RoundTripsUtf8AndRawBytes) {
  const ByteTokenizer tok;
  const std::string text = "Hello, w\xc3\xb6rld \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82\n\t%";
  const std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), text.size());  // one id per byte
  EXPECT_EQ(ids[0], 'H');
  EXPECT_EQ(ids[8], 0xc3);
  for (int32_t id : ids) EXPECT_TRUE(ByteTokenizer::is_byte(id));
  EXPECT_EQ(tok.decode(ids), text);

  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));  // includes invalid UTF-8
  EXPECT_EQ(tok.decode(tok.encode(all_bytes)), all_bytes);
  EXPECT_TRUE(tok.encode("").empty());
}

TEST(ByteTokenizer, SpecialIds) {
  const ByteTokenizer tok;
  EXPECT_EQ(ByteTokenizer::kBosId, 256);
  EXPECT_EQ(ByteTokenizer::kEosId, 257);
  EXPECT_EQ(ByteTokenizer::kPadId, 258);
  EXPECT_EQ(ByteTokenizer::kNumIds, 259);
  const std::vector<int32_t> ids = tok.encode("ab", {.add_bos = true, .add_eos = true});
  EXPECT_EQ(ids, (std::vector<int32_t>{256, 'a', 'b', 257}));
  const std::vector<int32_t> with_pad = {256, 'h', 'i', 257, 258, 300};
  EXPECT_EQ(tok.decode(with_pad), "hi");
  EXPECT_EQ(tok.decode(with_pad, {.special = SpecialTokens::render}), "<bos>hi<eos><pad><unused:300>");
  EXPECT_THROW(tok.decode(std::vector<int32_t>{'a', -1}), InvalidArgument);
  EXPECT_EQ(ByteTokenizer::token_repr('\n'), "\\n");
  EXPECT_EQ(ByteTokenizer::token_repr(0xff), "<0xff>");
  EXPECT_EQ(ByteTokenizer::token_repr('z'), "z");
}

}  // namespace
}  // namespace tsp::data
