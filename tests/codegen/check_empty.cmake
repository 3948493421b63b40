# Compiles SRC to x86-64 assembly with CXX -O2 -DNDEBUG and fails unless the body of FUNC is
# only "return true": a move of 1 into the return register and a return (plus the CET landing
# pad and assembler directives). Run by ctest as codegen.<name>:
#   cmake -DCXX=<compiler> -DSRC=<file> -DINC=<include dir> -DFUNC=<symbol> -P check_empty.cmake
execute_process(
  COMMAND "${CXX}" -std=c++20 -O2 -DNDEBUG -fno-exceptions -fno-rtti
          -fno-asynchronous-unwind-tables -I "${INC}" -S -o - "${SRC}"
  OUTPUT_VARIABLE asm
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling ${SRC} failed:\n${err}")
endif()
string(REPLACE "\n" ";" lines "${asm}")
set(inside OFF)
set(seen_ret OFF)
set(body "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "[ \t]#.*$" "" l "${line}")  # trailing comments (clang)
  string(STRIP "${l}" l)
  if(l STREQUAL "${FUNC}:")
    set(inside ON)
    continue()
  endif()
  if(NOT inside)
    continue()
  endif()
  if(l MATCHES "^\\.size[ \t]+${FUNC}" OR l MATCHES "^\\.cfi_endproc")
    break()
  endif()
  if(l STREQUAL "" OR l MATCHES "^[.#]" OR l MATCHES "^[A-Za-z0-9_.$]+:$")
    continue()  # directives, comments, local labels
  endif()
  string(APPEND body "  ${l}\n")
  if(l MATCHES "^retq?$")
    set(seen_ret ON)
  elseif(NOT l MATCHES "^(endbr64|mov[lb]?[ \t]+\\$1,[ \t]*%(eax|al))$")
    message(FATAL_ERROR "${FUNC} is not empty; its body:\n${body}")
  endif()
endforeach()
if(NOT inside OR NOT seen_ret)
  message(FATAL_ERROR "${FUNC} not found in the assembly of ${SRC}")
endif()
message(STATUS "${FUNC}: only 'return true'\n${body}")
