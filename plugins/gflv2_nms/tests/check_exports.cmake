# ctest helper: cmake -DLIB=<shared library> -DSYMBOLS=a;b -P check_exports.cmake
# Fails unless every symbol is a defined dynamic export of LIB (nm -D --defined-only).
execute_process(COMMAND nm -D --defined-only "${LIB}" OUTPUT_VARIABLE _nm RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "nm -D failed on ${LIB}")
endif()
foreach(_s IN LISTS SYMBOLS)
  string(REGEX MATCH "[ \t]T ${_s}\n" _hit "${_nm}")
  if(NOT _hit)
    message(FATAL_ERROR "${LIB} does not export ${_s}")
  endif()
  message(STATUS "${LIB}: exports ${_s}")
endforeach()
