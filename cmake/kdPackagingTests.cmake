# Tests of the library as its users see it: the ABI against the committed baseline, an installed
# tree consumed through find_package and pkg-config, and the ctypes binding.

# abi: tests/abi/check.sh compares build/libkd.so with tests/abi/libkd.abi.
find_program(KD_ABIDIFF abidiff)
find_program(KD_ABIDW abidw)
if(KD_ABIDIFF AND KD_ABIDW)
  add_test(NAME abi COMMAND ${PROJECT_SOURCE_DIR}/tests/abi/check.sh ${PROJECT_BINARY_DIR})
else()
  set(KD_ABI_MISSING "abidiff/abidw not found: the abi test is skipped (Debian: abigail-tools)")
  message(STATUS "${KD_ABI_MISSING}")
  add_test(NAME abi COMMAND sh -c "echo '${KD_ABI_MISSING}'; exit 77")
  set_tests_properties(abi PROPERTIES SKIP_RETURN_CODE 77)
endif()

# consumer: installs this build into a temporary prefix and builds tests/consumer against it.
add_test(NAME consumer COMMAND ${PROJECT_SOURCE_DIR}/tests/consumer/run.sh
                              ${PROJECT_BINARY_DIR} ${CMAKE_INSTALL_LIBDIR})
set_tests_properties(consumer PROPERTIES TIMEOUT 300
                     ENVIRONMENT "CMAKE=${CMAKE_COMMAND};CC=${CMAKE_C_COMPILER}")

# python: the ctypes binding in examples/python, loaded from the freshly built libkd.so.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME python COMMAND ${Python3_EXECUTABLE} -m unittest discover -v
                               -s ${PROJECT_SOURCE_DIR}/tests/python)
  set_tests_properties(python PROPERTIES TIMEOUT 120 ENVIRONMENT
    "KD_LIBRARY=$<TARGET_FILE:kd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/examples/python;\
PYTHONDONTWRITEBYTECODE=1")
else()
  message(STATUS "python3 not found: the python test is skipped (Debian: apt-get install python3)")
  add_test(NAME python COMMAND sh -c "echo 'python: skipped, python3 not found'; exit 77")
  set_tests_properties(python PROPERTIES SKIP_RETURN_CODE 77)
endif()

# python_package: the kd package (python/kd) from the source tree, with NumPy, under KD_PYTHON
# (Debian's /usr/bin/python3 and python3-numpy); python_install: cmake --install into a DESTDIR
# staging directory, then the package imported from there. Skipped without NumPy.
set(KD_PY_SKIP "if ! ${KD_PYTHON} -c 'import numpy' 2>/dev/null; then echo \
'skipped: ${KD_PYTHON} has no numpy (Debian: apt-get install python3-numpy)'; exit 77; fi")
add_test(NAME python_package COMMAND sh -c "${KD_PY_SKIP}; exec ${KD_PYTHON} -m unittest discover -v -p test_package.py -s \
${PROJECT_SOURCE_DIR}/tests/python_package")
add_test(NAME python_install COMMAND sh -c "${KD_PY_SKIP}; exec \
${PROJECT_SOURCE_DIR}/tests/python_package/install.sh ${PROJECT_BINARY_DIR} ${KD_PYTHON} \
${CMAKE_INSTALL_LIBDIR}")
set_tests_properties(python_package python_install PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77
  ENVIRONMENT "KD_LIBRARY=$<TARGET_FILE:kd>;PYTHONPATH=${PROJECT_SOURCE_DIR}/python;\
PYTHONDONTWRITEBYTECODE=1;CMAKE=${CMAKE_COMMAND}")

# python_torch_reference: examples/python/torch_roundtrip.py on the committed PyTorch teacher
# logits (no PyTorch needed); python_torch_roundtrip: the whole example when KD_PYTHON has torch
# (Debian: python3-torch), skipped otherwise.
add_test(NAME python_torch_reference COMMAND sh -c "${KD_PY_SKIP}; exec ${KD_PYTHON} \
${PROJECT_SOURCE_DIR}/examples/python/torch_roundtrip.py \
--reference ${PROJECT_SOURCE_DIR}/tests/data/torch_roundtrip")
add_test(NAME python_torch_roundtrip COMMAND sh -c "${KD_PY_SKIP}; if ! ${KD_PYTHON} -c \
'import torch' 2>/dev/null; then echo 'skipped: no torch for ${KD_PYTHON} (Debian: \
python3-torch)'; exit 77; fi; exec ${KD_PYTHON} \
${PROJECT_SOURCE_DIR}/examples/python/torch_roundtrip.py")
set_tests_properties(python_torch_reference python_torch_roundtrip PROPERTIES TIMEOUT 300
  SKIP_RETURN_CODE 77 ENVIRONMENT "KD_LIBRARY=$<TARGET_FILE:kd>;\
PYTHONPATH=${PROJECT_SOURCE_DIR}/python;PYTHONDONTWRITEBYTECODE=1")
# Both run cmake --install on this build (which writes its install_manifest.txt): one at a time.
set_tests_properties(consumer python_install PROPERTIES RESOURCE_LOCK kd_cmake_install)
