# What both package tests build (included by add_subdirectory/ and find_package/ once they have
# phyr): consumer.cpp against phyr::phyr, and against phyr::fmt as well when `with_fmt` is
# true, run as the ctest test `consumer`, which passes when it prints "consumer: ok".
set(_phyr_consumer_source "${CMAKE_CURRENT_LIST_DIR}/consumer.cpp")

function(phyr_add_consumer with_fmt)
  add_executable(consumer "${_phyr_consumer_source}")
  target_link_libraries(consumer PRIVATE phyr::phyr)
  if(with_fmt)
    target_link_libraries(consumer PRIVATE phyr::fmt)
    target_compile_definitions(consumer PRIVATE PHYR_CONSUMER_WITH_FMT)
  endif()
  add_test(NAME consumer COMMAND consumer)
  set_tests_properties(consumer PROPERTIES PASS_REGULAR_EXPRESSION "consumer: ok")
endfunction()
