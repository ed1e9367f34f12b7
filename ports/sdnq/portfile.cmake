# Overlay port of sdnq, a header-only C++20/CUDA library; docs/consuming.md tells how to use it.
# sdnq has no release archive yet, so the source is named by the user, in an overlay triplet
# (set(SDNQ_SOURCE_DIR ...)) or in the environment:
#   SDNQ_SOURCE_DIR               a local sdnq checkout, used in place;
#   SDNQ_GIT_URL + SDNQ_GIT_REF   a git repository and the full commit SHA to build.
set(VCPKG_BUILD_TYPE release)  # headers only: no debug tree

foreach(setting SDNQ_SOURCE_DIR SDNQ_GIT_URL SDNQ_GIT_REF)
  if(NOT DEFINED ${setting} AND DEFINED ENV{${setting}})
    set(${setting} "$ENV{${setting}}")
  endif()
endforeach()

if(SDNQ_SOURCE_DIR)
  if(NOT EXISTS "${SDNQ_SOURCE_DIR}/CMakeLists.txt" OR NOT EXISTS "${SDNQ_SOURCE_DIR}/include/sdnq/version.hpp")
    message(FATAL_ERROR "SDNQ_SOURCE_DIR=${SDNQ_SOURCE_DIR} is not an sdnq source tree "
                        "(expected CMakeLists.txt and include/sdnq/version.hpp there)")
  endif()
  set(SOURCE_PATH "${SDNQ_SOURCE_DIR}")
elseif(SDNQ_GIT_URL)
  if(NOT SDNQ_GIT_REF MATCHES "^[0-9a-f]+$" OR NOT SDNQ_GIT_REF MATCHES "^.{40}$")
    message(FATAL_ERROR "SDNQ_GIT_REF must be the full 40-digit commit SHA to build from ${SDNQ_GIT_URL}, "
                        "got '${SDNQ_GIT_REF}'")
  endif()
  vcpkg_from_git(OUT_SOURCE_PATH SOURCE_PATH URL "${SDNQ_GIT_URL}" REF "${SDNQ_GIT_REF}" HEAD_REF main)
else()
  message(FATAL_ERROR "no source for sdnq: set SDNQ_SOURCE_DIR (a local checkout), or SDNQ_GIT_URL and "
                      "SDNQ_GIT_REF (repository and commit SHA), in an overlay triplet or the environment")
endif()

# The port's version must be the source's, or vcpkg would record a wrong one.
file(STRINGS "${SOURCE_PATH}/include/sdnq/version.hpp" version_line REGEX "define SDNQ_VERSION_STRING")
string(REGEX MATCH "\"([^\"]+)\"" unused "${version_line}")
if(NOT CMAKE_MATCH_1 STREQUAL VERSION)
  message(FATAL_ERROR "the port is sdnq ${VERSION} but ${SOURCE_PATH} is sdnq '${CMAKE_MATCH_1}': "
                      "update ports/sdnq/vcpkg.json or point at the matching source")
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS FEATURES cuda SDNQ_CUDA)

# sdnq's configure step enables CUDA when the feature is on; the installed headers are compiled by
# the consumer, who chooses the GPU architectures there.
set(cuda_options "")
if("cuda" IN_LIST FEATURES)
  if(NOT COMMAND vcpkg_find_cuda)
    include("${CURRENT_INSTALLED_DIR}/share/cuda/vcpkg_find_cuda.cmake")
  endif()
  vcpkg_find_cuda(OUT_CUDA_TOOLKIT_ROOT cuda_toolkit_root)
  set(cuda_options "-DCMAKE_CUDA_COMPILER=${cuda_toolkit_root}/bin/nvcc" "-DCUDAToolkit_ROOT=${cuda_toolkit_root}")
endif()

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    ${cuda_options}
    -DSDNQ_INSTALL=ON
    -DSDNQ_BUILD_TESTS=OFF
    -DSDNQ_BUILD_EXAMPLES=OFF
    -DSDNQ_BUILD_BENCHMARKS=OFF
    -DSDNQ_BUILD_FUZZERS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME sdnq CONFIG_PATH share/cmake/sdnq)

# Headers only: no lib/ or debug/ tree; the license goes to vcpkg's copyright file instead of share/doc.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/share/doc")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
