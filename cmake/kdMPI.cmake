# kd_mpi: the optional MPI component (include/kd_mpi.h, lib/mpi/), built when CMake finds MPI's C
# library (Debian: libopenmpi-dev). libkd itself never links MPI. KD_MPI=OFF skips it, ON requires it.
set(KD_MPI AUTO CACHE STRING "Build kd_mpi, the MPI all-reduce for data-parallel training: AUTO, ON or OFF")
set(KD_HAVE_MPI OFF)
if(NOT KD_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS C)
  if(MPI_C_FOUND)
    set(KD_HAVE_MPI ON)
  elseif(KD_MPI STREQUAL "ON")
    message(FATAL_ERROR "KD_MPI=ON but no MPI was found. On Debian: apt-get install libopenmpi-dev openmpi-bin")
  else()
    message(STATUS "kd_mpi: no MPI found, data-parallel training over MPI is not built "
                   "(apt-get install libopenmpi-dev openmpi-bin)")
  endif()
endif()

if(KD_HAVE_MPI)
  add_library(kd_mpi SHARED ${PROJECT_SOURCE_DIR}/lib/mpi/kd_mpi.c)
  set_target_properties(kd_mpi PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                        C_VISIBILITY_PRESET hidden)
  target_compile_options(kd_mpi PRIVATE ${KD_WARNINGS})
  target_link_libraries(kd_mpi PUBLIC kd MPI::MPI_C)
  target_include_directories(kd_mpi PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  add_library(kd::kd_mpi ALIAS kd_mpi)
endif()
