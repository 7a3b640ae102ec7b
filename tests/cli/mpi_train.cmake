# `tsp train --layout tsp` under mpirun, end to end (invoked by ctest, see CMakeLists.txt):
#   cmake -DMPIEXEC=... -DNP_FLAG=... -DTSP=<binary> -DWORK=<scratch dir> -P mpi_train.cmake
# 1. mpirun -np 2 tsp train --layout tsp --tsp 2 trains 4 steps of the tiny preset, prints the
#    progress lines with bytes sent and comm wait, the validation, the per-rank memory table, and
#    writes a checkpoint; 2. single-rank `tsp eval` of that checkpoint reproduces the validation
#    loss the distributed run printed; 3. wrong degrees or sizes fail fast with a clear message.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(common --preset tiny --steps 4 --batch 4 --seq 32 --warmup 1 --eval-batches 2)

function(run_job np)
  execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} ${np} --oversubscribe ${TSP} train ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  set(rc "${rc}" PARENT_SCOPE)
  set(out "${out}${err}" PARENT_SCOPE)
endfunction()

run_job(2 ${common} --layout tsp --tsp 2 --checkpoint-dir ${WORK}/ckpt --metrics ${WORK}/m.jsonl)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "distributed training failed (${rc}):\n${out}")
endif()
foreach(needle "layout: dp=1 x pp=1 x sp=1 x tp=1 x tsp=2" "step 4/4 | loss" "| sent "
               "comm wait" "per-rank peak memory" "checkpoint: step 4 -> ")
  string(FIND "${out}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "'${needle}' missing from the output:\n${out}")
  endif()
endforeach()
string(REGEX MATCH "val step 4 \\| val_loss ([0-9.]+)" m "${out}")
set(dist_val "${CMAKE_MATCH_1}")
if(dist_val STREQUAL "")
  message(FATAL_ERROR "no final validation line:\n${out}")
endif()

execute_process(COMMAND ${TSP} eval --checkpoint ${WORK}/ckpt RESULT_VARIABLE rc
                OUTPUT_VARIABLE eout ERROR_VARIABLE eerr TIMEOUT 60)
string(REGEX MATCH "val_loss ([0-9.]+)" m "${eout}")
if(NOT rc EQUAL 0 OR NOT "${CMAKE_MATCH_1}" STREQUAL "${dist_val}")
  message(FATAL_ERROR "tsp eval of the tsp checkpoint gave '${CMAKE_MATCH_1}', the run printed "
                      "'${dist_val}' (rc ${rc}):\n${eout}${eerr}")
endif()

# Clear errors, non-zero exit, no hang.
run_job(2 ${common} --layout tsp --tsp 4)
if(rc EQUAL 0 OR NOT out MATCHES "tsp=4 = 4, but the world has 2 ranks")
  message(FATAL_ERROR "a --tsp that does not match -np must fail clearly (${rc}):\n${out}")
endif()
run_job(2 --preset tiny --steps 1 --batch 2 --seq 30 --layout tsp --tsp 2)
if(rc EQUAL 0 OR NOT out MATCHES "sequence length S=30 is not divisible by 2\\*D=4")
  message(FATAL_ERROR "--seq 30 at tsp 2 must fail clearly (${rc}):\n${out}")
endif()
run_job(2 --preset tiny --steps 1 --batch 2 --seq 32 --layout tsp --tsp 2 --vocab-size-is-not-a-flag)
if(rc EQUAL 0)
  message(FATAL_ERROR "an unknown flag must fail:\n${out}")
endif()
file(REMOVE_RECURSE ${WORK})
