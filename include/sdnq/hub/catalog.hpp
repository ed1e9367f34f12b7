#pragma once
// The model catalog: the 30 entries of the ComfyUI-SDNQ node pack's registry (core/registry.py,
// 2026-01-15), with what each repo really stores and the sampling preset of its family. Two entries
// (the FLUX.1-dev qint8/qint4 repos) are Optimum-Quanto checkpoints, not SDNQ: they stay listed so a
// user who knows them by name gets an explanation and an alternative instead of a failed load.
//
//   const sdnq::hub::CatalogEntry* entry = sdnq::hub::find_catalog_entry("Z-Image-Turbo-SDNQ-int8");
//   sdnq::hub::require_sdnq(*entry);  // throws UnsupportedError for the quanto entries
#include <algorithm>
#include <cctype>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::hub {

// How the weights are stored in the published repo.
enum class StorageFormat {
  sdnq_uint4_svd,     // uint4 with an SVD low-rank side channel (rank in svd_rank)
  sdnq_int8,          // int8, group size disabled for fast int8 matmul
  sdnq_dynamic_4bit,  // per-layer mix chosen by loss (uint4, int4, int5, float4_e3m0fn, float5_e3m1fn), maybe SVD
  sdnq_dynamic_8bit,  // per-layer mix around 8 bits
  quanto_qint8,       // Optimum-Quanto, not SDNQ
  quanto_qint4,       // Optimum-Quanto, not SDNQ
};

inline std::string_view to_string(StorageFormat format) {
  switch (format) {
    case StorageFormat::sdnq_uint4_svd:
      return "sdnq-uint4-svd";
    case StorageFormat::sdnq_int8:
      return "sdnq-int8";
    case StorageFormat::sdnq_dynamic_4bit:
      return "sdnq-4bit-dynamic";
    case StorageFormat::sdnq_dynamic_8bit:
      return "sdnq-8bit-dynamic";
    case StorageFormat::quanto_qint8:
      return "optimum-quanto-qint8";
    case StorageFormat::quanto_qint4:
      return "optimum-quanto-qint4";
  }
  return "unknown";
}

// The sampling preset of an architecture family. Steps and guidance are the model card's values where
// the card gives them, else the diffusers pipeline's __call__ defaults; empty means "the pipeline's own
// default" where neither was confirmed.
struct ModelFamily {
  std::string_view name;            // "FLUX.1"
  std::string_view pipeline_class;  // diffusers class in model_index.json; empty when not diffusers
  std::string_view scheduler;       // diffusers scheduler class
  std::optional<int> steps;
  std::optional<float> guidance;
  std::string_view guidance_parameter;  // "guidance_scale" or "true_cfg_scale" (Qwen-Image's real CFG)
  std::string_view notes;
};

struct CatalogEntry {
  std::string_view name;          // the registry key: "FLUX.1-dev-SDNQ-uint4"
  std::string_view repo_id;       // "Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32"
  std::string_view catalog_type;  // the registry's `type`: FLUX, FLUX2, Qwen, Z-Image, ...
  std::string_view quant_level;   // the registry's `quant_level`: int8, uint4, 4bit
  int priority;                   // the registry's sort order (1 = first; 14 is unused there)
  std::string_view description;   // the registry's description
  const ModelFamily* family;
  StorageFormat format;
  int svd_rank;  // 0: no SVD side channel
  std::string_view format_detail;
  std::string_view notes;

  bool is_sdnq() const { return format != StorageFormat::quanto_qint8 && format != StorageFormat::quanto_qint4; }
  // False for repos without model_index.json (HunyuanImage 3 is a transformers model).
  bool is_diffusers_pipeline() const { return !family->pipeline_class.empty(); }
};

}  // namespace sdnq::hub

#include "sdnq/hub/catalog_data.hpp"

namespace sdnq::hub {

// All entries, in the registry's priority order.
inline std::span<const CatalogEntry> catalog() { return detail::catalog_entries; }

// By registry name or repo id; exact first, then ignoring case. nullptr when nothing matches.
inline const CatalogEntry* find_catalog_entry(std::string_view name_or_repo_id) {
  for (const CatalogEntry& entry : catalog())
    if (entry.name == name_or_repo_id || entry.repo_id == name_or_repo_id) return &entry;
  auto same_ignoring_case = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
  };
  for (const CatalogEntry& entry : catalog())
    if (same_ignoring_case(entry.name, name_or_repo_id) || same_ignoring_case(entry.repo_id, name_or_repo_id))
      return &entry;
  return nullptr;
}

// Throws UnsupportedError, naming the real format and an SDNQ alternative, for entries sdnq cannot load.
inline void require_sdnq(const CatalogEntry& entry) {
  if (entry.is_sdnq()) return;
  throw UnsupportedError(fmt::format(
      "{} ({}) is not an SDNQ checkpoint: it is {} (a quantization_map.json with Optimum-Quanto tensors), which sdnq "
      "does not load. Use FLUX.1-dev-SDNQ-uint4 (Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32) for FLUX.1-dev in SDNQ.",
      entry.name, entry.repo_id,
      entry.format == StorageFormat::quanto_qint8 ? "Optimum-Quanto qint8" : "Optimum-Quanto qint4"));
}

inline nlohmann::json to_json(const CatalogEntry& entry) {
  const ModelFamily& family = *entry.family;
  nlohmann::json preset = {{"family", family.name},
                           {"pipeline_class", family.pipeline_class},
                           {"scheduler", family.scheduler},
                           {"steps", family.steps ? nlohmann::json(*family.steps) : nlohmann::json(nullptr)},
                           {"guidance", family.guidance ? nlohmann::json(*family.guidance) : nlohmann::json(nullptr)},
                           {"guidance_parameter", family.guidance_parameter},
                           {"notes", family.notes}};
  return {{"name", entry.name},         {"repo_id", entry.repo_id},
          {"type", entry.catalog_type}, {"quant_level", entry.quant_level},
          {"priority", entry.priority}, {"description", entry.description},
          {"sdnq", entry.is_sdnq()},    {"format", to_string(entry.format)},
          {"svd_rank", entry.svd_rank}, {"format_detail", entry.format_detail},
          {"notes", entry.notes},       {"preset", std::move(preset)}};
}

// The whole catalog as JSON (docs/catalog.json is this, dumped with indent 2).
inline nlohmann::json catalog_json() {
  nlohmann::json entries = nlohmann::json::array();
  for (const CatalogEntry& entry : catalog()) entries.push_back(to_json(entry));
  return {{"source",
           "EnragedAntelope/comfyui-sdnq core/registry.py (2026-01-15), formats from the Hugging Face model cards"},
          {"entries", std::move(entries)}};
}

}  // namespace sdnq::hub
