# Runs failing_rank_mpi under mpirun and passes only if the job exits non-zero, the failing rank's
# message is printed, and everything ended within MAX_SECONDS (no hang). Invoked by ctest as
#   cmake -DMPIEXEC=... -DNP_FLAG=... -DNP=... -DPROGRAM=... -DMAX_SECONDS=... -P expect_abort.cmake
string(TIMESTAMP t0 "%s")
execute_process(
  COMMAND ${MPIEXEC} ${NP_FLAG} ${NP} --oversubscribe ${PROGRAM}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")
math(EXPR last "${NP} - 1")
message(STATUS "mpirun -np ${NP} exited with '${rc}' after ${elapsed} s")
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself within ${MAX_SECONDS} s: ${rc}\n${out}\n${err}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited 0 although rank ${last} threw\n${out}\n${err}")
endif()
if(NOT "${out}${err}" MATCHES "rank ${last}: deliberate failure on the last rank")
  message(FATAL_ERROR "the failing rank's message is missing\n${out}\n${err}")
endif()
if(elapsed GREATER ${MAX_SECONDS})
  message(FATAL_ERROR "the job took ${elapsed} s (limit ${MAX_SECONDS} s)")
endif()
