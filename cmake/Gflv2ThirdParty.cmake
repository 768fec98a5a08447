# Third-party pieces shared by the project's C++ deliverables (cpp/ runtime library, plugins/gflv2_nms).
# include() it from a project's CMakeLists.txt; it defines:
#
#   GFLV2_REPO_ROOT        the repository root (this file's parent folder)
#   GFLV2_THIRD_PARTY_DIR  third_party/ of the repository: vendored headers (third_party/README.md)
#   gflv2::onnxruntime     IMPORTED shared library: ONNX Runtime 1.27 C/C++ headers from third_party/,
#                          the library from the pinned onnxruntime wheel (GFLV2_PYTHON, default .venv/bin/python)
#   gflv2::tensorrt10_headers / gflv2::tensorrt11_headers
#                          INTERFACE targets: TensorRT 10.16 / 11.1 headers (as system headers) + CUDA headers.
#                          Headers only: libnvinfer cannot be installed here, so anything using them links
#                          with TensorRT symbols unresolved (see third_party/README.md). Never link them
#                          with TensorRT-RTX's library: its ABI differs.
#
# Why the wheel: no registry reachable here ships ONNX Runtime headers and a matching library together;
# the API-27 headers work with the 1.32 library (the C API is versioned). The wheel has no .so / .so.1
# links, so they are made in the build tree.

get_filename_component(GFLV2_REPO_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(GFLV2_THIRD_PARTY_DIR "${GFLV2_REPO_ROOT}/third_party" CACHE PATH "folder of the vendored third-party headers")
set(GFLV2_PYTHON "${GFLV2_REPO_ROOT}/.venv/bin/python" CACHE FILEPATH "Python with the pinned onnxruntime wheel")

# --- ONNX Runtime ---------------------------------------------------------------------------------
if(NOT TARGET gflv2::onnxruntime)
  set(_ort_include "${GFLV2_THIRD_PARTY_DIR}/onnxruntime/1.27.1/include")
  if(NOT EXISTS "${_ort_include}/onnxruntime_cxx_api.h")
    message(FATAL_ERROR "ONNX Runtime headers not found in ${_ort_include} (vendored in third_party/)")
  endif()
  execute_process(
    COMMAND "${GFLV2_PYTHON}" -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))"
    OUTPUT_VARIABLE _ort_capi OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ort_rc ERROR_QUIET)
  if(NOT _ort_rc EQUAL 0)
    message(FATAL_ERROR "cannot import onnxruntime with ${GFLV2_PYTHON}: run scripts/setup.sh first "
                        "or pass -DGFLV2_PYTHON=/path/to/python")
  endif()
  file(GLOB _ort_real "${_ort_capi}/libonnxruntime.so.1.*")
  if(NOT _ort_real)
    message(FATAL_ERROR "no libonnxruntime.so.1.* in ${_ort_capi}")
  endif()
  list(GET _ort_real 0 _ort_real)
  set(_ort_link_dir "${CMAKE_BINARY_DIR}/onnxruntime_lib")
  file(MAKE_DIRECTORY "${_ort_link_dir}")
  file(CREATE_LINK "${_ort_real}" "${_ort_link_dir}/libonnxruntime.so.1" SYMBOLIC)
  file(CREATE_LINK "${_ort_real}" "${_ort_link_dir}/libonnxruntime.so" SYMBOLIC)
  add_library(gflv2::onnxruntime SHARED IMPORTED GLOBAL)
  set_target_properties(gflv2::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${_ort_link_dir}/libonnxruntime.so.1"
    IMPORTED_SONAME "libonnxruntime.so.1"
    INTERFACE_INCLUDE_DIRECTORIES "${_ort_include}")
  set(GFLV2_ONNXRUNTIME_LIB_DIR "${_ort_link_dir}" CACHE INTERNAL "folder with libonnxruntime.so.1 (for RPATH)")
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
