# ctest helper (package.install): install the build tree BUILD_DIR into a fresh PREFIX.
#   cmake -DBUILD_DIR=<build> -DPREFIX=<stage> -DCONFIG=<config> -P phyr-stage-install.cmake
foreach(var BUILD_DIR PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "phyr-stage-install.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
set(_config "")
if(CONFIG)
  set(_config --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${_config}
                COMMAND_ERROR_IS_FATAL ANY)
foreach(f share/cmake/phyr/phyrConfig.cmake share/cmake/phyr/phyrConfigVersion.cmake
          share/cmake/phyr/phyrTargets.cmake include/phyr/phyr.hpp
          include/phyr/version.hpp share/pkgconfig/phyr.pc share/doc/phyr/LICENSE)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "staged install lacks ${f}")
  endif()
endforeach()
message(STATUS "phyr staged in ${PREFIX}")
