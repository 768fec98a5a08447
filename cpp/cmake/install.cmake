# Install rules of the C++ package: a relocatable prefix that C and C++ services consume with
#   find_package(gflv2 CONFIG REQUIRED)  ->  target gflv2::gflv2
#   pkg-config --cflags --libs gflv2
# Layout: include/gflv2/*.h*, lib/libgflv2.so.<version> (+ SONAME link), lib/libgflv2_tensorrt{10,11}.so (opened on
# demand), lib/libonnxruntime.so.1 (GFLV2_INSTALL_ONNXRUNTIME), bin/gflv2-detect, lib/cmake/gflv2/, lib/pkgconfig/.
include(CMakePackageConfigHelpers)

set(GFLV2_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/gflv2" CACHE STRING "where gflv2Config.cmake goes")

install(TARGETS gflv2 EXPORT gflv2Targets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/gflv2 DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(_gflv2_tensorrt_targets)
  install(TARGETS ${_gflv2_tensorrt_targets} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
if(TARGET gflv2-detect)
  install(TARGETS gflv2-detect RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(GFLV2_INSTALL_ONNXRUNTIME AND GFLV2_ONNXRUNTIME_LIBRARY_FILE)
  install(FILES "${GFLV2_ONNXRUNTIME_LIBRARY_FILE}" DESTINATION ${CMAKE_INSTALL_LIBDIR} RENAME libonnxruntime.so.1)
endif()

install(EXPORT gflv2Targets NAMESPACE gflv2:: DESTINATION ${GFLV2_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/gflv2Config.cmake.in "${CMAKE_CURRENT_BINARY_DIR}/gflv2Config.cmake"
                              INSTALL_DESTINATION ${GFLV2_INSTALL_CMAKEDIR})
# 0.x releases: a minor release may change the C ABI (GFLV2_ABI_VERSION says which), so only the same minor matches
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/gflv2ConfigVersion.cmake"
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/gflv2Config.cmake" "${CMAKE_CURRENT_BINARY_DIR}/gflv2ConfigVersion.cmake"
        DESTINATION ${GFLV2_INSTALL_CMAKEDIR})

# pkg-config: paths relative to the .pc file itself (${pcfiledir}), so the prefix can move
file(RELATIVE_PATH GFLV2_PC_TO_PREFIX "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
configure_file(cmake/gflv2.pc.in "${CMAKE_CURRENT_BINARY_DIR}/gflv2.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/gflv2.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
