#pragma once
// allow_patterns / ignore_patterns as huggingface_hub applies them (utils/_paths.py::filter_repo_objects):
// Python's fnmatch.fnmatchcase, i.e. case-sensitive, `*` and `?` also match `/`, `[...]` sets with
// `[!...]` negation, and an unclosed `[` taken literally. Backslashes become `/` in patterns and paths,
// and a pattern ending in `/` gets a `*` appended, so "vae/" keeps everything under vae/.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sdnq::hub {

namespace detail {

// Matches one `[...]` set starting at pattern[start] == '['. Returns false in `closed` when the set has
// no closing bracket (then `[` is an ordinary character); `end` is the index after `]`.
inline bool match_bracket_set(std::string_view pattern, std::size_t start, char c, bool& closed, std::size_t& end) {
  std::size_t i = start + 1;
  bool negate = i < pattern.size() && pattern[i] == '!';
  if (negate) ++i;
  std::size_t first = i;
  // A `]` right after `[` or `[!` belongs to the set.
  if (i < pattern.size() && pattern[i] == ']') ++i;
  while (i < pattern.size() && pattern[i] != ']') ++i;
  if (i >= pattern.size()) {
    closed = false;
    return false;
  }
  closed = true;
  end = i + 1;
  bool found = false;
  for (std::size_t k = first; k < i; ++k) {
    if (k + 2 < i && pattern[k + 1] == '-') {
      // A range; a reversed one (z-a) matches nothing, as in Python.
      if (pattern[k] <= c && c <= pattern[k + 2]) found = true;
      k += 2;
    } else if (pattern[k] == c) {
      found = true;
    }
  }
  return found != negate;
}

}  // namespace detail

// fnmatch.fnmatchcase(name, pattern): the whole name must match.
inline bool fnmatch_case(std::string_view pattern, std::string_view name) {
  std::size_t p = 0, n = 0;
  // Where to resume after the most recent `*`: pattern index after it, and name index it absorbs up to.
  std::size_t star_pattern = std::string_view::npos, star_name = 0;
  while (n < name.size()) {
    bool advanced = false;
    if (p < pattern.size()) {
      char token = pattern[p];
      if (token == '*') {
        star_pattern = ++p;
        star_name = n;
        continue;
      }
      if (token == '?') {
        ++p, ++n;
        advanced = true;
      } else if (token == '[') {
        bool closed = false;
        std::size_t end = 0;
        bool matched = detail::match_bracket_set(pattern, p, name[n], closed, end);
        if (!closed) {
          matched = name[n] == '[';
          end = p + 1;
        }
        if (matched) {
          p = end, ++n;
          advanced = true;
        }
      } else if (token == name[n]) {
        ++p, ++n;
        advanced = true;
      }
    }
    if (advanced) continue;
    if (star_pattern == std::string_view::npos) return false;
    p = star_pattern;
    n = ++star_name;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// The form filter_repo_objects gives patterns and paths before matching.
inline std::string normalize_pattern(std::string_view pattern) {
  std::string normalized(pattern);
  for (char& c : normalized)
    if (c == '\\') c = '/';
  if (!normalized.empty() && normalized.back() == '/') normalized += '*';
  return normalized;
}

// True when `path` is kept: it matches any allow pattern (or none are given) and no ignore pattern.
inline bool path_is_selected(std::string_view path, const std::vector<std::string>& allow_patterns,
                             const std::vector<std::string>& ignore_patterns) {
  std::string normalized_path(path);
  for (char& c : normalized_path)
    if (c == '\\') c = '/';
  auto matches_any = [&](const std::vector<std::string>& patterns) {
    for (const std::string& pattern : patterns)
      if (fnmatch_case(normalize_pattern(pattern), normalized_path)) return true;
    return false;
  };
  if (!allow_patterns.empty() && !matches_any(allow_patterns)) return false;
  return !matches_any(ignore_patterns);
}

inline std::vector<std::string> filter_paths(const std::vector<std::string>& paths,
                                             const std::vector<std::string>& allow_patterns,
                                             const std::vector<std::string>& ignore_patterns) {
  std::vector<std::string> kept;
  for (const std::string& path : paths)
    if (path_is_selected(path, allow_patterns, ignore_patterns)) kept.push_back(path);
  return kept;
}

}  // namespace sdnq::hub
