// The catalog: the 30 ComfyUI-SDNQ registry entries, their formats and families, lookups, refusals.
#include <fstream>
#include <set>

#include "sdnq/hub/catalog.hpp"
#include "sdnq/hub/repo.hpp"
#include "sdnq_catch.hpp"

using namespace sdnq::hub;

TEST_CASE("the catalog holds the registry's 30 entries in priority order", "[hub][catalog]") {
  auto entries = catalog();
  REQUIRE(entries.size() == 30);
  std::set<std::string_view> names, repos;
  int previous_priority = 0;
  for (const CatalogEntry& entry : entries) {
    INFO(entry.name);
    CHECK(names.insert(entry.name).second);
    CHECK(repos.insert(entry.repo_id).second);
    CHECK_NOTHROW(validate_repo_id(entry.repo_id));
    CHECK(entry.repo_id.starts_with("Disty0/"));
    CHECK(entry.priority > previous_priority);
    CHECK(entry.priority != 14);  // the registry has no priority 14
    previous_priority = entry.priority;
    REQUIRE(entry.family != nullptr);
    // A "-svd-rNN" repo name is exactly an SVD side channel of rank NN.
    std::string_view repo = entry.repo_id;
    std::size_t svd = repo.find("-svd-r");
    int rank_in_name = svd == std::string_view::npos ? 0 : std::stoi(std::string(repo.substr(svd + 6)));
    CHECK(entry.svd_rank == rank_in_name);
    CHECK(entry.is_sdnq() == (repo.find("SDNQ") != std::string_view::npos));
  }
  CHECK(entries.front().name == "FLUX.1-dev-qint8");
  CHECK(entries.back().name == "LTX-2-SDNQ-8bit");
  auto count = [&](StorageFormat format) {
    return std::count_if(entries.begin(), entries.end(), [&](const CatalogEntry& e) { return e.format == format; });
  };
  CHECK(count(StorageFormat::sdnq_uint4_svd) == 21);
  CHECK(count(StorageFormat::sdnq_int8) == 1);
  CHECK(count(StorageFormat::sdnq_dynamic_4bit) == 5);
  CHECK(count(StorageFormat::sdnq_dynamic_8bit) == 1);
  CHECK(count(StorageFormat::quanto_qint8) == 1);
  CHECK(count(StorageFormat::quanto_qint4) == 1);
}

TEST_CASE("catalog entries are found by name or repo id and carry their family preset", "[hub][catalog]") {
  const CatalogEntry* z_image = find_catalog_entry("Z-Image-Turbo-SDNQ-int8");
  REQUIRE(z_image);
  CHECK(z_image->repo_id == "Disty0/Z-Image-Turbo-SDNQ-int8");
  CHECK(z_image->format == StorageFormat::sdnq_int8);
  CHECK(z_image->family->pipeline_class == "ZImagePipeline");
  CHECK(z_image->family->steps == 9);
  CHECK(z_image->family->guidance == 0.0f);
  CHECK(find_catalog_entry("Disty0/Z-Image-Turbo-SDNQ-int8") == z_image);
  CHECK(find_catalog_entry("z-image-turbo-sdnq-int8") == z_image);
  CHECK(find_catalog_entry("Disty0/does-not-exist") == nullptr);

  const CatalogEntry* qwen = find_catalog_entry("Qwen-Image-Edit-2511-SDNQ-uint4");
  REQUIRE(qwen);
  CHECK(qwen->family->pipeline_class == "QwenImageEditPlusPipeline");
  CHECK(qwen->family->guidance_parameter == "true_cfg_scale");
  CHECK(find_catalog_entry("NoobAI-XL-v1.1-SDNQ-uint4")->svd_rank == 128);
  CHECK(find_catalog_entry("FLUX.2-klein-9B-SDNQ-4bit")->format == StorageFormat::sdnq_dynamic_4bit);
  CHECK_FALSE(find_catalog_entry("HunyuanImage3-SDNQ-uint4")->is_diffusers_pipeline());
  CHECK(find_catalog_entry("Wan2.2-T2V-A14B-SDNQ-uint4")->family->scheduler == "UniPCMultistepScheduler");
}

TEST_CASE("the Optimum-Quanto entries are refused with an explanation", "[hub][catalog]") {
  for (std::string_view name : {"FLUX.1-dev-qint8", "Disty0/FLUX.1-dev-qint4"}) {
    const CatalogEntry* entry = find_catalog_entry(name);
    REQUIRE(entry);
    CHECK_FALSE(entry->is_sdnq());
    try {
      require_sdnq(*entry);
      FAIL("a quanto entry was accepted");
    } catch (const sdnq::UnsupportedError& error) {
      std::string message = error.what();
      CHECK(message.find("not an SDNQ checkpoint") != std::string::npos);
      CHECK(message.find("Optimum-Quanto") != std::string::npos);
      CHECK(message.find("Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32") != std::string::npos);
    }
  }
  CHECK_NOTHROW(require_sdnq(*find_catalog_entry("FLUX.1-dev-SDNQ-uint4")));
}

TEST_CASE("docs/catalog.json is the catalog as generated", "[hub][catalog]") {
  std::ifstream in(sdnq::test::data_dir() / ".." / ".." / "docs" / "catalog.json");
  REQUIRE(in);
  auto documented = nlohmann::json::parse(in);
  CHECK(documented == catalog_json());  // regenerate with: sdnq-download --list --json > docs/catalog.json
  CHECK(documented["entries"].size() == 30);
  CHECK(documented["entries"][0]["sdnq"] == false);
}
