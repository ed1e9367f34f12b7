# Checks of the installed package beyond "find_package succeeded", run by the find_package route.
# Each probe runs find_package again inside a function, so its result variables stay local.

# A request for the next major version is rejected (SameMajorVersion). The rejection resets the
# cached sdnq_DIR to NOTFOUND, so the found location is put back afterwards.
function(sdnq_probe_next_major major)
  set(found_dir ${sdnq_DIR})
  math(EXPR next_major "${major} + 1")
  find_package(sdnq ${next_major} CONFIG QUIET)
  if(sdnq_FOUND)
    message(FATAL_ERROR "find_package(sdnq ${next_major}) accepted sdnq ${sdnq_VERSION}: expected SameMajorVersion")
  endif()
  set(sdnq_DIR ${found_dir} CACHE PATH "The directory containing sdnqConfig.cmake" FORCE)
endfunction()

# A 32-bit consumer accepts the 64-bit install: headers only, so the version file is ARCH_INDEPENDENT.
# The version file is evaluated directly, as find_package does: a real find_package with 4-byte
# pointers would stop earlier, at dependencies (fmt) whose own version files do check the pointer size.
function(sdnq_probe_other_pointer_size version)
  set(CMAKE_SIZEOF_VOID_P 4)
  set(PACKAGE_FIND_NAME sdnq)
  set(PACKAGE_FIND_VERSION ${version})
  string(REPLACE "." ";" parts ${version})
  list(GET parts 0 PACKAGE_FIND_VERSION_MAJOR)
  list(GET parts 1 PACKAGE_FIND_VERSION_MINOR)
  list(GET parts 2 PACKAGE_FIND_VERSION_PATCH)
  set(PACKAGE_FIND_VERSION_COUNT 3)
  include(${sdnq_DIR}/sdnqConfigVersion.cmake)
  if(NOT PACKAGE_VERSION_COMPATIBLE OR PACKAGE_VERSION_UNSUITABLE)
    message(FATAL_ERROR "sdnqConfigVersion.cmake rejects a consumer with 4-byte pointers: expected ARCH_INDEPENDENT")
  endif()
endfunction()

# COMPONENTS cuda succeeds exactly when sdnq::cuda exists.
function(sdnq_probe_cuda_component expect_cuda)
  find_package(sdnq CONFIG QUIET COMPONENTS cuda)
  if(expect_cuda AND NOT (sdnq_FOUND AND TARGET sdnq::cuda))
    message(FATAL_ERROR "find_package(sdnq COMPONENTS cuda) failed on a CUDA install: ${sdnq_NOT_FOUND_MESSAGE}")
  endif()
  if(NOT expect_cuda AND (sdnq_FOUND OR TARGET sdnq::cuda))
    message(FATAL_ERROR "find_package(sdnq COMPONENTS cuda) succeeded where sdnq::cuda must be absent")
  endif()
endfunction()

function(check_sdnq_package major version expect_cuda)
  sdnq_probe_next_major(${major})
  sdnq_probe_other_pointer_size(${version})
  sdnq_probe_cuda_component(${expect_cuda})
  if(expect_cuda AND NOT TARGET sdnq::cuda)
    message(FATAL_ERROR "sdnq::cuda is missing from a CUDA install")
  endif()
  if(NOT expect_cuda AND TARGET sdnq::cuda)
    message(FATAL_ERROR "sdnq::cuda exists where it must be absent")
  endif()
endfunction()
