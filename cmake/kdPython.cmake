# The Python package python/kd: installed with the library into the Python path of the system's
# interpreter. KD_PYTHON is that interpreter (Debian's /usr/bin/python3 when it exists: a pyenv or
# venv python3 first on PATH is not the one the system's packages are for). KD_PYTHON_INSTALL_DIR
# is the directory, relative to the prefix or absolute; empty (the default), KD_PYTHON computes it
# at install time for the prefix installed to (cmake/python_install_dir.py), so that
# `cmake --install --prefix` and DESTDIR work. Debian: prefix /usr -> lib/python3/dist-packages,
# /usr/local -> lib/python3.X/dist-packages, both on Debian's sys.path.
if(EXISTS /usr/bin/python3)
  set(KD_PYTHON_DEFAULT /usr/bin/python3)
else()
  find_program(KD_PYTHON_DEFAULT NAMES python3)
endif()
set(KD_PYTHON "${KD_PYTHON_DEFAULT}" CACHE FILEPATH
    "Python interpreter the kd package is installed for and tested with")

set(KD_PYTHON_INSTALL_DIR "" CACHE STRING
    "Where cmake --install puts the kd Python package, relative to the prefix or absolute \
(empty: asked of KD_PYTHON at install time, for the prefix installed to)")
if(KD_PYTHON_INSTALL_DIR)
  message(STATUS "kd Python package: ${KD_PYTHON_INSTALL_DIR}")
else()
  message(STATUS "kd Python package: the site directory ${KD_PYTHON} uses for the prefix")
endif()

# At install time, when the prefix (cmake --install --prefix) is known: the directory, the
# package, and _install.py, which tells the installed package where the installed library is.
install(CODE "
  set(kd_pydir \"${KD_PYTHON_INSTALL_DIR}\")
  set(kd_python \"${KD_PYTHON}\")
  if(NOT kd_pydir AND kd_python)
    execute_process(COMMAND \"${KD_PYTHON}\" \"${PROJECT_SOURCE_DIR}/cmake/python_install_dir.py\"
                            \"\${CMAKE_INSTALL_PREFIX}\"
                    OUTPUT_VARIABLE kd_pydir OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  if(NOT kd_pydir)
    set(kd_pydir lib/python3/dist-packages)
  endif()
  if(NOT IS_ABSOLUTE \"\${kd_pydir}\")
    set(kd_pydir \"\${CMAKE_INSTALL_PREFIX}/\${kd_pydir}\")
  endif()
  set(kd_libdir \"${CMAKE_INSTALL_LIBDIR}\")
  if(NOT IS_ABSOLUTE \"\${kd_libdir}\")
    set(kd_libdir \"\${CMAKE_INSTALL_PREFIX}/\${kd_libdir}\")
  endif()
  file(INSTALL DESTINATION \"\${kd_pydir}\" TYPE DIRECTORY FILES \"${PROJECT_SOURCE_DIR}/python/kd\"
       FILES_MATCHING PATTERN \"*.py\" PATTERN \"__pycache__\" EXCLUDE PATTERN \"_install.py\" EXCLUDE)
  message(STATUS \"Installing: \$ENV{DESTDIR}\${kd_pydir}/kd/_install.py\")
  file(WRITE \"\$ENV{DESTDIR}\${kd_pydir}/kd/_install.py\"
       \"\\\"\\\"\\\"Written by cmake --install: where libkd was installed.\\\"\\\"\\\"\\nLIBDIR = \\\"\${kd_libdir}\\\"\\nSOVERSION = ${PROJECT_VERSION_MAJOR}\\n\")
")
