# git_sha.cmake - write OUT (a header defining ORDERQ_GIT_SHA) at every
# build: GIVEN when set (a Docker build has no .git), else the source
# tree's `git rev-parse --short HEAD`, else "unknown". The file is rewritten
# only when the text changes, so an unchanged commit rebuilds nothing.
set(sha "${GIVEN}")
if(sha STREQUAL "")
  set(sha "unknown")
  find_package(Git QUIET)
  if(GIT_FOUND)
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD
                    WORKING_DIRECTORY ${SRC}
                    OUTPUT_VARIABLE out OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE rc ERROR_QUIET)
    if(rc EQUAL 0 AND out MATCHES "^[0-9a-f]+$")
      set(sha "${out}")
    endif()
  endif()
endif()
if(NOT sha MATCHES "^[0-9A-Za-z._-]+$")
  message(FATAL_ERROR "ORDERQ_GIT_SHA \"${sha}\": expected letters, digits, '.', '_' or '-'")
endif()
set(text "#define ORDERQ_GIT_SHA \"${sha}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
