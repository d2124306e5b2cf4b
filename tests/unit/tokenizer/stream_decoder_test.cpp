// StreamDecoder: text is released only at UTF-8 character boundaries.
#include <gtest/gtest.h>

#include "core/error.h"
#include "fixtures.h"
#include "tokenizer/utf8.h"

namespace kestrel::tokfix {
namespace {

TEST(StreamDecoder, HoldsBackASplitCharacter) {
  // The SPM vocab has no piece for U+1F600, so it is emitted as four byte tokens;
  // nothing may come out until the fourth byte arrives.
  const Tokenizer tok(spm_spec(false));
  const auto ids = tok.encode("hi \xF0\x9F\x98\x80!", false, false);
  StreamDecoder dec(tok);
  std::vector<std::string> outs;
  for (int32_t id : ids) outs.push_back(dec.push(id));
  outs.push_back(dec.flush());
  std::string all;
  for (const auto& o : outs) {
    all += o;
    EXPECT_TRUE(tok::utf8_is_valid(o)) << "chunk cuts a character: " << show(o);
  }
  EXPECT_EQ(all, " hi \xF0\x9F\x98\x80!");  // raw pieces: the SPM prefix space stays
  // The byte tokens: the first three give nothing, the fourth the whole emoji.
  const size_t n = ids.size();
  ASSERT_GE(n, 5u);
  EXPECT_EQ(outs[n - 5], "");
  EXPECT_EQ(outs[n - 4], "");
  EXPECT_EQ(outs[n - 3], "");
  EXPECT_EQ(outs[n - 2], "\xF0\x9F\x98\x80");
  EXPECT_EQ(outs[n - 1], "!");
}

TEST(StreamDecoder, FlushReturnsAnIncompleteTail) {
  const Tokenizer tok(spm_spec(false));
  StreamDecoder dec(tok);
  const auto ids = tok.encode("\xE2\x82\xAC", false, false);  // U+20AC, not in the vocab
  // [▁] then <0xE2> <0x82> <0xAC>: stop before the last byte.
  std::string got;
  for (size_t i = 0; i + 1 < ids.size(); ++i) got += dec.push(ids[i]);
  EXPECT_EQ(got, " ");
  EXPECT_EQ(dec.flush(), "\xE2\x82");
  EXPECT_EQ(dec.flush(), "");
}

TEST(StreamDecoder, ControlTokensHiddenUnlessRendered) {
  const Tokenizer tok(spm_spec(false));
  StreamDecoder plain(tok), rendered(tok, true);
  EXPECT_EQ(plain.push(2), "");
  EXPECT_EQ(rendered.push(2), "</s>");
  EXPECT_THROW(plain.push(tok.n_vocab()), Error);
}

}  // namespace
}  // namespace kestrel::tokfix
