# Flags for the project's own tests, examples and benchmarks (never imposed on consumers). No
# --expt-relaxed-constexpr: consumers compile the headers without it, so our own build must too.
add_library(sdnq_build_flags INTERFACE)
target_compile_options(sdnq_build_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
if(SDNQ_SANITIZE)
  target_compile_options(sdnq_build_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer>)
  # GCC 12 reports false maybe-uninitialized warnings inside libstdc++'s <regex> and <functional>
  # only when instrumented; the uninstrumented build keeps the warning.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(sdnq_build_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized>)
  endif()
  target_link_options(sdnq_build_flags INTERFACE
    $<$<LINK_LANGUAGE:CXX>:-fsanitize=address,undefined>)
endif()
