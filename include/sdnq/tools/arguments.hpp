#pragma once
// Command-line parsing shared by the sdnq-* tools: options declared up front (a flag, or an option
// that takes one value), positional arguments kept in order, `--name=value` accepted as well as
// `--name value`. Anything undeclared is a UsageError naming the argument, so a typo never passes silently.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"

namespace sdnq::tools {

// Bad command-line input: the tools print the message and their usage text, and exit with 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

struct OptionSpec {
  std::set<std::string, std::less<>> flags;          // "--json"
  std::set<std::string, std::less<>> with_value;     // "--type"
};

class ParsedArguments {
 public:
  std::vector<std::string> positional;

  bool flag(std::string_view name) const { return flags_.contains(name); }
  std::optional<std::string> value(std::string_view name) const {
    auto found = values_.find(name);
    if (found == values_.end()) return std::nullopt;
    return found->second;
  }
  // The option's value parsed as an integer within [minimum, maximum]; `fallback` when absent.
  long long integer(std::string_view name, long long fallback, long long minimum, long long maximum) const {
    const auto text = value(name);
    if (!text) return fallback;
    std::size_t used = 0;
    long long number = 0;
    try {
      number = std::stoll(*text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    SDNQ_REQUIRE(used == text->size() && !text->empty(), UsageError, "{} needs an integer, got \"{}\"", name, *text);
    SDNQ_REQUIRE(number >= minimum && number <= maximum, UsageError, "{} must be between {} and {}, got {}", name,
                 minimum, maximum, number);
    return number;
  }

 private:
  friend ParsedArguments parse_arguments(int argc, const char* const* argv, const OptionSpec& spec);
  std::set<std::string, std::less<>> flags_;
  std::map<std::string, std::string, std::less<>> values_;
};

inline ParsedArguments parse_arguments(int argc, const char* const* argv, const OptionSpec& spec) {
  ParsedArguments parsed;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument.size() < 2 || argument[0] != '-' || argument == "--") {
      parsed.positional.push_back(argument);
      continue;
    }
    std::optional<std::string> inline_value;
    if (const auto equals = argument.find('='); equals != std::string::npos) {
      inline_value = argument.substr(equals + 1);
      argument.resize(equals);
    }
    if (spec.flags.contains(argument)) {
      SDNQ_REQUIRE(!inline_value, UsageError, "{} takes no value (got \"{}\")", argument, *inline_value);
      parsed.flags_.insert(argument);
    } else if (spec.with_value.contains(argument)) {
      if (!inline_value) {
        SDNQ_REQUIRE(i + 1 < argc, UsageError, "{} needs a value", argument);
        inline_value = argv[++i];
      }
      parsed.values_[argument] = *inline_value;
    } else {
      throw UsageError(fmt::format("unknown option {}", argument));
    }
  }
  return parsed;
}

// "a,b,,c/" -> {"a", "b", "c"}: component lists, trailing slashes dropped (shell completion adds them).
inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    while (part.ends_with('/')) part.remove_suffix(1);
    if (!part.empty()) parts.emplace_back(part);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
}

}  // namespace sdnq::tools
