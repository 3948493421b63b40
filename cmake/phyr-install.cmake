# Install rules and the CMake package: find_package(phyr CONFIG) -> phyr::phyr (and phyr::fmt).
#
# phyr is header-only, so the package is architecture independent and lives in
# <prefix>/share/cmake/phyr. phyr::fmt is exported to a separate file that phyrConfig.cmake
# only loads when fmt can be found (or is required with COMPONENTS fmt).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(PHYR_INSTALL_CMAKEDIR
    "${CMAKE_INSTALL_DATADIR}/cmake/phyr"
    CACHE STRING "Where phyr's CMake package files are installed, relative to the prefix")
mark_as_advanced(PHYR_INSTALL_CMAKEDIR)

install(
  TARGETS phyr
  EXPORT phyrTargets
  FILE_SET HEADERS
  COMPONENT phyr_Development)
install(
  EXPORT phyrTargets
  NAMESPACE phyr::
  DESTINATION "${PHYR_INSTALL_CMAKEDIR}"
  COMPONENT phyr_Development)
export(
  EXPORT phyrTargets
  NAMESPACE phyr::
  FILE "${PROJECT_BINARY_DIR}/phyrTargets.cmake")

if(TARGET phyr_fmt)
  install(
    TARGETS phyr_fmt
    EXPORT phyrFmtTargets
    FILE_SET HEADERS
    COMPONENT phyr_Development)
  install(
    EXPORT phyrFmtTargets
    NAMESPACE phyr::
    DESTINATION "${PHYR_INSTALL_CMAKEDIR}"
    COMPONENT phyr_Development)
  export(
    EXPORT phyrFmtTargets
    NAMESPACE phyr::
    FILE "${PROJECT_BINARY_DIR}/phyrFmtTargets.cmake")
elseif(EXISTS "${PHYR_FMT_HEADER}")
  # No fmt at configure time: still ship the header; phyrConfig.cmake then defines phyr::fmt
  # itself when the consumer has fmt.
  install(
    FILES "${PHYR_FMT_HEADER}"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/phyr"
    COMPONENT phyr_Development)
endif()

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/phyrConfig.cmake.in" "${PROJECT_BINARY_DIR}/phyrConfig.cmake"
  INSTALL_DESTINATION "${PHYR_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/phyrConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(
  FILES "${PROJECT_BINARY_DIR}/phyrConfig.cmake" "${PROJECT_BINARY_DIR}/phyrConfigVersion.cmake"
  DESTINATION "${PHYR_INSTALL_CMAKEDIR}"
  COMPONENT phyr_Development)

# pkg-config, for build systems other than CMake: `pkg-config --cflags phyr` gives the include
# directory and -std=c++20. Architecture independent like the CMake package, so it goes to
# share/pkgconfig.
set(PHYR_INSTALL_PKGCONFIGDIR
    "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where phyr.pc is installed, relative to the prefix")
mark_as_advanced(PHYR_INSTALL_PKGCONFIGDIR)
configure_file("${CMAKE_CURRENT_LIST_DIR}/phyr.pc.in" "${PROJECT_BINARY_DIR}/phyr.pc" @ONLY)
install(
  FILES "${PROJECT_BINARY_DIR}/phyr.pc"
  DESTINATION "${PHYR_INSTALL_PKGCONFIGDIR}"
  COMPONENT phyr_Development)
install(
  FILES "${PROJECT_SOURCE_DIR}/LICENSE"
  DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/phyr"
  COMPONENT phyr_Development)
