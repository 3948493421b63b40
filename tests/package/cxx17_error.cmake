# ctest helper (package.cxx17_error): including phyr below C++20 must stop with phyr's own
# sentence, not with a page of concept errors.
#   cmake -DCXX=<compiler> -DINCLUDE=<include dir> -DOUT=<dir> -P cxx17_error.cmake
file(MAKE_DIRECTORY "${OUT}")
file(WRITE "${OUT}/cxx17.cpp" "#include <phyr/phyr.hpp>\nint main() { return 0; }\n")
execute_process(COMMAND "${CXX}" -std=c++17 -fsyntax-only "-I${INCLUDE}" "${OUT}/cxx17.cpp"
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "phyr compiled as C++17; it must refuse")
endif()
if(NOT err MATCHES "phyr needs C\\+\\+20")
  message(FATAL_ERROR "C++17 compile failed without phyr's sentence:\n${err}")
endif()
message(STATUS "C++17 refused with phyr's #error, as it should")
