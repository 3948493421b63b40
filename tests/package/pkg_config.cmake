# ctest helper (package.pkg_config): a consumer built with nothing but `pkg-config --cflags phyr`
# against the staged install, then run.
#   cmake -DPREFIX=<stage> -DCXX=<compiler> -DSOURCE=<consumer.cpp> -DOUT=<dir> -P pkg_config.cmake
foreach(var PREFIX CXX SOURCE OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "pkg_config.cmake: ${var} is not set")
  endif()
endforeach()
find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
execute_process(COMMAND "${PKG_CONFIG}" --cflags phyr OUTPUT_VARIABLE cflags
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${PKG_CONFIG}" --modversion phyr OUTPUT_VARIABLE version
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
message(STATUS "pkg-config: phyr ${version}: ${cflags}")
if(NOT cflags MATCHES "-std=c\\+\\+20")
  message(FATAL_ERROR "phyr.pc does not ask for C++20: '${cflags}'")
endif()
separate_arguments(cflags_list UNIX_COMMAND "${cflags}")
file(MAKE_DIRECTORY "${OUT}")
execute_process(COMMAND "${CXX}" ${cflags_list} "-DPHYR_EXPECTED_VERSION=\"${version}\"" "${SOURCE}"
                        -o "${OUT}/pkg_config_consumer" COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${OUT}/pkg_config_consumer" COMMAND_ERROR_IS_FATAL ANY)
