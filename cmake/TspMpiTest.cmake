# Registration of MPI tests, shared by every layer that runs programs under mpirun (comm now;
# parallel/ and train/ later). Included from the top-level CMakeLists.txt after find_package(MPI),
# which also defines TSP_MPI_TEST_ENV, the environment every MPI test runs with.
#
# tsp_add_mpi_test(<test name> NP <ranks> PROGRAM <executable or $<TARGET_FILE:...>>
#                  [ARGS <program arguments>...] [TIMEOUT <seconds>] [LABELS <extra labels>...])
#
# Adds one ctest test running
#   mpiexec -n <ranks> --oversubscribe <MPIEXEC_PREFLAGS> <program> <MPIEXEC_POSTFLAGS> <args>
# with label "mpi" (plus LABELS), ENVIRONMENT ${TSP_MPI_TEST_ENV} and TIMEOUT (default 60 s, the
# guard against hangs). --oversubscribe lets any rank count run on this 2-core machine (and makes
# idle ranks yield; see docs/running.md). Tests that must wrap mpiexec themselves (e.g. a script
# expecting the job to fail) use add_test directly with ENVIRONMENT "${TSP_MPI_TEST_ENV}".
function(tsp_add_mpi_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "NP;PROGRAM;TIMEOUT" "ARGS;LABELS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tsp_add_mpi_test(${name}): unexpected arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_NP OR NOT arg_PROGRAM)
    message(FATAL_ERROR "tsp_add_mpi_test(${name}): NP and PROGRAM are required")
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 60)
  endif()
  add_test(NAME ${name}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${arg_NP} --oversubscribe
                   ${MPIEXEC_PREFLAGS} ${arg_PROGRAM} ${MPIEXEC_POSTFLAGS} ${arg_ARGS})
  set(labels mpi ${arg_LABELS})
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT ${arg_TIMEOUT}
                       ENVIRONMENT "${TSP_MPI_TEST_ENV}")
endfunction()
