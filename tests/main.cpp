// The one Catch2 main shared by every tests/unit/*_test.cpp executable. Built from source with
// the tests' own flags (sanitizers, compiler) instead of the prebuilt Catch2WithMain.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
