#pragma once
// The files of a repo at one commit, as the tree API lists them.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdnq::hub {

struct RepoFileEntry {
  std::string path;  // "transformer/diffusion_pytorch_model.safetensors"
  std::uint64_t size = 0;
  std::string blob_id;                    // git blob sha1
  std::optional<std::string> lfs_sha256;  // LFS files only
  std::string etag() const { return lfs_sha256 ? *lfs_sha256 : blob_id; }
};

struct RepoListing {
  std::string commit;
  std::vector<RepoFileEntry> files;
};

}  // namespace sdnq::hub
