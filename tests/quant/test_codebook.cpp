// Lloyd-Max codebook rows: a hand-computed example, and the reference's codes and levels for the
// codebook fixture cases (rows of `original.linear.weight` widened to fp32).
#include <vector>

#include "sdnq/quant/codebook.hpp"
#include "test_quantize_support.hpp"

TEST_CASE("lloyd_max_codebook on a small row", "[quant][codebook]") {
  // Two clusters and an outlier; 4 levels start at 0, 3, 6, 9.
  const std::vector<float> row = {0.0f, 1.0f, 0.5f, 9.0f, 8.0f, 8.5f, 4.0f};
  std::vector<float> levels(4);
  std::vector<std::uint16_t> indices(row.size());
  sdnq::quant::lloyd_max_codebook(row, 0, levels, indices);
  CHECK(levels == std::vector<float>{0.0f, 3.0f, 6.0f, 9.0f});
  // midpoints 1.5, 4.5, 7.5: searchsorted left
  CHECK(indices == std::vector<std::uint16_t>{0, 0, 0, 3, 3, 3, 1});
  sdnq::quant::lloyd_max_codebook(row, 1, levels, indices);
  // level 0 <- mean(0, 1, .5) = .5, level 1 <- 4, level 2 (empty) keeps 6, level 3 <- mean(9, 8, 8.5) = 8.5
  CHECK(levels == std::vector<float>{0.5f, 4.0f, 6.0f, 8.5f});
  // final assignment with midpoints 2.25, 5, 7.25
  CHECK(indices == std::vector<std::uint16_t>{0, 0, 0, 3, 3, 3, 1});
  // a value exactly on a midpoint goes to the lower level (left side)
  const std::vector<float> tie = {0.0f, 0.75f, 3.0f};
  std::vector<float> three(3);
  std::vector<std::uint16_t> tie_indices(3);
  sdnq::quant::lloyd_max_codebook(tie, 0, three, tie_indices);
  CHECK(tie_indices == std::vector<std::uint16_t>{0, 0, 2});  // levels 0, 1.5, 3; midpoints .75, 2.25
}

TEST_CASE("lloyd_max_codebook reproduces the reference's uint4 codebook rows", "[quant][codebook][fixtures]") {
  const auto fixture = sdnq::test::FixtureCase::open(sdnq::test::local_codec_fixtures() / "uint4-codebook");
  const auto original = fixture.reference.tensor("original.linear.weight");  // bf16 [64, 256], row-wise codebook
  const auto stored_levels = fixture.model.tensor("linear.scale");           // F32 [64, 16]
  const auto packed = fixture.model.tensor("linear.weight");                 // U8 [8192], two codes a byte
  REQUIRE(original.shape() == sdnq::Shape{64, 256});
  REQUIRE(stored_levels.shape() == sdnq::Shape{64, 16});
  const auto* bytes = packed.data_as<const std::uint8_t>();
  std::vector<float> row(256), levels(16);
  std::vector<std::uint16_t> indices(256);
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 256; ++c)
      row[c] = static_cast<float>(sdnq::quant::detail::load_float_from(original.dtype(), original.data(), r * 256 + c));
    sdnq::quant::lloyd_max_codebook(row, fixture.config.codebook_steps, levels, indices);
    for (int l = 0; l < 16; ++l) REQUIRE(levels[l] == stored_levels.data_as<const float>()[r * 16 + l]);
    for (int c = 0; c < 256; ++c) {
      const int flat = r * 256 + c;
      const int code = (flat % 2 == 0) ? bytes[flat / 2] & 0xF : bytes[flat / 2] >> 4;
      REQUIRE(indices[c] == code);
    }
  }
}
