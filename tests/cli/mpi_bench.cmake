# `tsp bench` under mpirun (invoked by ctest, see CMakeLists.txt):
#   cmake -DMPIEXEC=... -DNP_FLAG=... -DTSP=<binary> -DWORK=<scratch dir> -P mpi_bench.cmake
# Training mode: every layout of 2 ranks runs, ends at the same loss as single-rank, and the JSON
# and SVG are written with measured and predicted numbers. Inference mode: single, TSP and TP
# decode rows with KV bytes per rank.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} 2 --oversubscribe ${TSP} bench --preset tiny --seq 64
                        --batch 2 --steps 1 --json ${WORK}/b.json --svg ${WORK}/b.svg
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tsp bench failed (${rc}):\n${out}${err}")
endif()
string(REGEX MATCH "single +1 +64 [^\n]* ([0-9]+\\.[0-9]+)\n" m "${out}")
set(loss "${CMAKE_MATCH_1}")
foreach(layout tsp2 tp2 sp2 dp2 fsdp-sp2)
  if(NOT out MATCHES "${layout} +2 +64 [^\n]* ${loss}\n")
    message(FATAL_ERROR "${layout} missing or not at the single-rank loss ${loss}:\n${out}")
  endif()
endforeach()
file(READ ${WORK}/b.json json)
foreach(key peak_bytes_per_rank predicted_bytes_per_rank bytes_sent_per_step predicted_bytes_sent_per_step tokens_per_s)
  if(NOT json MATCHES "\"${key}\"")
    message(FATAL_ERROR "'${key}' missing from the JSON:\n${json}")
  endif()
endforeach()
file(READ ${WORK}/b.svg svg)
if(NOT svg MATCHES "^<svg" OR NOT svg MATCHES "fsdp-sp2")
  message(FATAL_ERROR "bad SVG:\n${svg}")
endif()
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} 2 --oversubscribe ${TSP} bench --infer --preset tiny
                        --seq 64 --new-tokens 4 --steps 1
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0 OR NOT out MATCHES "single \\(1 core\\) +prefill" OR NOT out MATCHES "tsp D=2 +prefill"
   OR NOT out MATCHES "tp T=2 +prefill" OR NOT out MATCHES "kv bytes/rank")
  message(FATAL_ERROR "tsp bench --infer (${rc}):\n${out}${err}")
endif()
file(REMOVE_RECURSE ${WORK})
