#!/usr/bin/env bash
# The rsh agent that lets Open MPI's mpirun start its daemons on emulated hosts (scripts/hosts.sh):
# it stands in for ssh. mpirun calls `AGENT [options] HOST COMMAND...` (Open MPI 4.1's plm_rsh:
#   mpirun --mca plm_rsh_agent scripts/hosts-agent.sh --hostfile /run/tsp-hosts/tsp/hostfile ...);
# the command runs inside network namespace HOST (ip netns exec), in a UTS namespace of its own
# whose hostname is HOST (so MPI_Get_processor_name, and the engine's rank-to-host map, tell the
# hosts apart), through sh -c with its words joined by spaces, as ssh would run it.
set -euo pipefail
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done   # ssh-style options: none apply here
[ $# -ge 2 ] || { echo "hosts-agent: usage: $0 HOST COMMAND..." >&2; exit 255; }
host=$1
shift
if ! ip netns list | awk '{print $1}' | grep -qxF "$host"; then
  echo "hosts-agent: no emulated host '$host' (scripts/hosts.sh up N makes them)" >&2
  exit 255
fi
exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$1" && shift && exec /bin/sh -c "$*"' sh "$host" "$@"
