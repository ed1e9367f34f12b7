#pragma once
// Small helpers shared by the CUDA test cases (host compiler only).
#include <string>

#include "sdnq_catch.hpp"

namespace sdnq::test {

// Runs `action`, requires it to throw `Exception`, and returns the exception's message.
template <class Exception, class Action>
std::string message_of(Action&& action) {
  try {
    action();
  } catch (const Exception& error) {
    return error.what();
  }
  FAIL("the expected exception was not thrown");
  return {};
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace sdnq::test
