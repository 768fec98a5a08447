# Third-party pieces shared by the project's C++ deliverables (cpp/ runtime library, plugins/gflv2_nms).
# include() it from a project's CMakeLists.txt; it defines:
#
#   GFLV2_REPO_ROOT        the repository root (this file's parent folder)
#   GFLV2_THIRD_PARTY_DIR  third_party/ of the repository: vendored headers (third_party/README.md)
#   gflv2::onnxruntime     INTERFACE target: ONNX Runtime 1.27 C/C++ headers from third_party/ (not linked:
#                          opened at run time); GFLV2_ONNXRUNTIME_LIBRARY_FILE: the library of the pinned
#                          onnxruntime wheel (GFLV2_PYTHON, default .venv/bin/python), when there is one
#   gflv2::tensorrt10_headers / gflv2::tensorrt11_headers
#                          INTERFACE targets: TensorRT 10.16 / 11.1 headers (as system headers) + CUDA headers.
#                          Headers only: libnvinfer cannot be installed here, so anything using them links
#                          with TensorRT symbols unresolved (see third_party/README.md). Never link them
#                          with TensorRT-RTX's library: its ABI differs.
#
# Why the wheel: no registry reachable here ships ONNX Runtime headers and a matching library together;
# the API-27 headers work with newer libraries (the C API is versioned).

get_filename_component(GFLV2_REPO_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(GFLV2_THIRD_PARTY_DIR "${GFLV2_REPO_ROOT}/third_party" CACHE PATH "folder of the vendored third-party headers")
set(GFLV2_PYTHON "${GFLV2_REPO_ROOT}/.venv/bin/python" CACHE FILEPATH "Python with the pinned onnxruntime wheel")

# --- ONNX Runtime ---------------------------------------------------------------------------------
# Headers only: libgflv2 and the custom-op library open ONNX Runtime at run time (cpp/src/ort_loader.hpp), so
# nothing links it and no path to it is baked into a library. The library file is still located (the pinned
# wheel of GFLV2_PYTHON, or -DGFLV2_ONNXRUNTIME_LIBRARY_FILE=...) when it is available: the build tree gets a
# libonnxruntime.so.1 link beside libgflv2.so, `cmake --install` copies it beside the installed library
# (GFLV2_INSTALL_ONNXRUNTIME), and the tests run with it.
if(NOT TARGET gflv2::onnxruntime)
  set(_ort_include "${GFLV2_THIRD_PARTY_DIR}/onnxruntime/1.27.1/include")
  if(NOT EXISTS "${_ort_include}/onnxruntime_cxx_api.h")
    message(FATAL_ERROR "ONNX Runtime headers not found in ${_ort_include} (vendored in third_party/)")
  endif()
  add_library(gflv2::onnxruntime INTERFACE IMPORTED GLOBAL)
  set_target_properties(gflv2::onnxruntime PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_ort_include}")
  if(NOT GFLV2_ONNXRUNTIME_LIBRARY_FILE AND EXISTS "${GFLV2_PYTHON}")
    execute_process(
      COMMAND "${GFLV2_PYTHON}" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"
      OUTPUT_VARIABLE _ort_capi OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ort_rc ERROR_QUIET)
    if(_ort_rc EQUAL 0)
      file(GLOB _ort_real "${_ort_capi}/libonnxruntime.so.1.*")
      if(_ort_real)
        list(GET _ort_real 0 _ort_real)
        set(GFLV2_ONNXRUNTIME_LIBRARY_FILE "${_ort_real}" CACHE FILEPATH "libonnxruntime.so.1.* (tests, install copy)" FORCE)
      endif()
    endif()
  endif()
  if(NOT GFLV2_ONNXRUNTIME_LIBRARY_FILE)
    message(STATUS "ONNX Runtime library not located (no onnxruntime in ${GFLV2_PYTHON}): libgflv2 will look for "
                   "it at run time only")
  endif()
endif()

# --- TensorRT headers (compile only) --------------------------------------------------------------
find_path(GFLV2_CUDA_INCLUDE cuda_runtime_api.h HINTS /usr/local/cuda/include ENV CUDA_HOME PATH_SUFFIXES include)
foreach(_trt_major_minor "10;10.16" "11;11.1")
  list(GET _trt_major_minor 0 _major)
  list(GET _trt_major_minor 1 _version)
  set(_target "gflv2::tensorrt${_major}_headers")
  set(_inc "${GFLV2_THIRD_PARTY_DIR}/tensorrt/${_version}/include")
  if(NOT TARGET ${_target} AND EXISTS "${_inc}/NvInfer.h")
    add_library(${_target} INTERFACE IMPORTED GLOBAL)
    set_target_properties(${_target} PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_inc};${GFLV2_CUDA_INCLUDE}"
                                                INTERFACE_INCLUDE_DIRECTORIES "${_inc};${GFLV2_CUDA_INCLUDE}")
  endif()
endforeach()
