#!/usr/bin/env bash
# Emulated hosts on one machine: N network namespaces ("hosts"), each with a veth into one bridge,
# optionally shaped with tc, so that mpirun runs a multi-host job over TCP without ssh or machines.
#
#   scripts/hosts.sh up N [--rate R] [--delay D] [--name P] [--subnet A.B.C]
#   scripts/hosts.sh down   [--name P]      # removes everything `up` made; idempotent
#   scripts/hosts.sh status [--name P]
#   scripts/hosts.sh check                  # exit 0 if namespaces can be made here, 77 (and why) if not
#
# Layout (P = --name, default "tsp"): namespaces P-h0 .. P-h{N-1}, host k at A.B.C.(k+1)/24 on its
# eth0, the other veth end P-vk in the root namespace, enslaved to bridge P-br (A.B.C.254; mpirun
# runs in the root namespace and its daemons connect back to it). Default subnet 10.231.0.
# Names: /etc/netns/P-hk/hosts (which `ip netns exec` bind-mounts over /etc/hosts inside host k)
# lists every host and "P-gw" (the bridge); the root namespace gets the same lines in a marked
# block of /etc/hosts ("# >>> tsp-hosts P" .. "# <<< tsp-hosts P"), which `down` removes exactly.
# Shaping (--rate like 1gbit / 10gbit / 500mbit, --delay like 0.1ms): each host's link is shaped
# in BOTH directions, on the egress of both veth ends: a token bucket (tbf) at the rate with a
# netem child adding the delay. Host to host a message crosses two links: one-way delay 2D,
# bottleneck R (as two NICs through a switch).
# State: /run/tsp-hosts/P/ holds the hostfile (one "P-hk slots=1" per host) and the settings.
# The rsh agent for Open MPI is scripts/hosts-agent.sh (docs/running.md, "Emulated hosts").
# Needs root and iproute2 (ip, tc) and util-linux (unshare, for the agent).
set -euo pipefail

say() { printf 'hosts: %s\n' "$*"; }
die() { printf 'hosts: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'hosts: cannot emulate hosts here: %s\n' "$*" >&2; exit 77; }

cmd=${1:-}
[ -n "$cmd" ] && shift
n=""
rate=""
delay=""
name=tsp
subnet=10.231.0
if [ "$cmd" = up ]; then
  n=${1:-}
  [ -n "$n" ] && shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --delay) delay=${2:?--delay needs a value}; shift 2 ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
    *) die "unknown argument '$1' (see the header of $0)" ;;
  esac
done
[[ "$name" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--name '$name': 1-8 lower-case letters and digits, a letter first (interface names are at most 15 characters)"
[[ "$subnet" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "--subnet '$subnet': three octets, like 10.231.0"

state=/run/tsp-hosts/$name
bridge=$name-br
begin_mark="# >>> tsp-hosts $name (scripts/hosts.sh; 'hosts.sh down --name $name' removes this block) >>>"
end_mark="# <<< tsp-hosts $name <<<"

# Prints why namespaces cannot be made here (and returns 1), or nothing (0). Tries every kind of
# object `up` makes, with throw-away names, and removes them again.
probe() {
  [ "$(id -u)" -eq 0 ] || { echo "not root (network namespaces, veth and tc need root)"; return 1; }
  command -v ip >/dev/null || { echo "no 'ip' command (install iproute2)"; return 1; }
  command -v tc >/dev/null || { echo "no 'tc' command (install iproute2)"; return 1; }
  command -v unshare >/dev/null || { echo "no 'unshare' command (install util-linux)"; return 1; }
  local p=tspprobe$$ err
  # Where ip netns add would fail half-way (leaving a name behind that only root could remove):
  # /run/netns not ours to write (a user namespace's fake root), no network namespaces at all.
  local d=/run/netns
  [ -d "$d" ] || d=/run
  [ -w "$d" ] || { echo "$d is not writable (not the real root?)"; return 1; }
  if ! err=$(timeout 10 unshare --net true 2>&1); then echo "cannot make a network namespace: $err"; return 1; fi
  if ! err=$(timeout 10 ip netns add "$p" 2>&1); then
    ip netns del "$p" 2>/dev/null || rm -f "/run/netns/$p" 2>/dev/null || true
    echo "'ip netns add' fails: $err"
    return 1
  fi
  local why=""
  if ! err=$(timeout 10 ip netns exec "$p" true 2>&1); then why="'ip netns exec' fails: $err"
  elif ! err=$(timeout 10 ip netns exec "$p" unshare --uts hostname tspprobe 2>&1); then
    why="cannot name a host (unshare --uts, hostname; the agent needs them): $err"
  elif ! err=$(timeout 10 ip link add "${p}a" type veth peer name "${p}b" 2>&1); then why="cannot make a veth pair: $err"
  elif ! err=$(timeout 10 ip link add "${p}c" type bridge 2>&1); then why="cannot make a bridge: $err"
  fi
  ip link del "${p}a" 2>/dev/null || true
  ip link del "${p}c" 2>/dev/null || true
  ip netns del "$p" 2>/dev/null || true
  [ -z "$why" ] || { echo "$why"; return 1; }
}

remove_hosts_block() {
  [ -f /etc/hosts ] && grep -qxF "$begin_mark" /etc/hosts || return 0
  local tmp
  tmp=$(mktemp)
  awk -v b="$begin_mark" -v e="$end_mark" '$0 == b { skip = 1; next } $0 == e && skip { skip = 0; next } !skip' \
      /etc/hosts > "$tmp"
  # Written in place (not renamed over): /etc/hosts may be a bind mount (containers).
  cat "$tmp" > /etc/hosts
  rm -f "$tmp"
}

down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$name-h[0-9]+$" || true); do
    # Processes still inside (a killed job's orted) would keep the namespace alive: end them.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$name-v[0-9]+$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  remove_hosts_block
  rm -rf "$state"
  rmdir /run/tsp-hosts 2>/dev/null || true
}

# tbf at $rate with a netem child adding $delay on the egress of device $1 (run through $2...:
# "" for the root namespace, "ip netns exec NS" inside a host).
shape() {
  local dev=$1
  shift
  local parent=root
  if [ -n "$rate" ]; then
    # Burst: at least 64 KiB (a GSO segment; tbf splits larger ones) and 2 ms at the rate: with
    # less, a loaded machine's late timer wakeups leave the bucket full and the link well below
    # its rate (measured: 1 Mbit burst at 1 Gbit/s moved 60% more than 64 KiB).
    local bps
    bps=$(rate_bits "$rate")
    local burst=$((bps / 8 / 500))
    [ "$burst" -ge 65536 ] || burst=65536
    # Peak rate 5% above the rate (a second bucket of one 64 KiB segment): a real NIC sends at
    # its line rate, but the bucket alone lets a burst that refilled during compute cross at
    # memory speed (measured: TP 2 moved 4.5 MiB per step at 0.21 GB/s over
    # "1 Gbit/s", and every row of docs/cluster.md below S = 4096 came out 22-82% slow).
    "$@" tc qdisc add dev "$dev" root handle 1: tbf rate "$rate" burst "$burst" latency 100ms \
        peakrate "$((bps / 100 * 105))bit" mtu 65536
    parent="parent 1:1"
  fi
  if [ -n "$delay" ]; then
    # shellcheck disable=SC2086
    "$@" tc qdisc add dev "$dev" $parent handle 10: netem delay "$delay" limit 100000
  fi
}

# Whether this kernel has netem (a minimal or container kernel may lack sch_netem).
netem_works() {
  local p=tspnetem$$ ok=1
  ip link add "${p}a" type veth peer name "${p}b" 2>/dev/null || return 1
  tc qdisc add dev "${p}a" root netem delay 1ms 2>/dev/null || ok=0
  ip link del "${p}a" 2>/dev/null || true
  [ "$ok" -eq 1 ]
}

# --rate in bits per second (tc's units: bit, kbit, mbit, gbit; decimal).
# %.0f, not %d: mawk (Debian's awk) prints %d of 1e10 as 2147483647.
rate_bits() {
  local r=${1,,}
  case "$r" in
    *ibit | *bps) die "--rate '$1': decimal bit units only (bit, kbit, mbit, gbit), like 1gbit" ;;
    *gbit) awk -v x="${r%gbit}" 'BEGIN { printf "%.0f", x * 1e9 }' ;;
    *mbit) awk -v x="${r%mbit}" 'BEGIN { printf "%.0f", x * 1e6 }' ;;
    *kbit) awk -v x="${r%kbit}" 'BEGIN { printf "%.0f", x * 1e3 }' ;;
    *bit) awk -v x="${r%bit}" 'BEGIN { printf "%.0f", x }' ;;
    *) die "--rate '$1': use tc's units, like 1gbit, 500mbit" ;;
  esac
}

up() {
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N in [1, 200], got '$n'"
  [ -z "$rate" ] || rate_bits "$rate" >/dev/null
  [ -z "$delay" ] || [[ "$delay" =~ ^[0-9.]+(us|ms|s)$ ]] || die "--delay '$delay': a number with us, ms or s"
  local why
  why=$(probe) || skip "$why"
  [ -z "$delay" ] || netem_works || die "--delay needs tc's netem qdisc (sch_netem), which this kernel lacks; leave --delay out (the link keeps veth's own latency, which bench/comm measures)"
  [ ! -d "$state" ] || die "hosts '$name' are up already ($state); 'hosts.sh down --name $name' first"
  # Anything half made (a run killed before its trap) is removed first; any failure from here on
  # removes what was made.
  down
  # shellcheck disable=SC2154  # status is assigned inside the trap
  trap 'status=$?; [ $status -eq 0 ] || { say "up failed, removing what was made"; down; }' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$state"
  ip link add "$bridge" type bridge forward_delay 0
  ip addr add "$subnet.254/24" dev "$bridge"
  ip link set "$bridge" up
  local names="$subnet.254 $name-gw"$'\n'
  local k
  for ((k = 0; k < n; k++)); do names+="$subnet.$((k + 1)) $name-h$k"$'\n'; done
  for ((k = 0; k < n; k++)); do
    local ns=$name-h$k
    ip netns add "$ns"
    ip link add "$name-v$k" type veth peer name "$name-v${k}n"
    ip link set "$name-v${k}n" netns "$ns"
    ip -n "$ns" link set "$name-v${k}n" name eth0
    ip -n "$ns" addr add "$subnet.$((k + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip link set "$name-v$k" master "$bridge"
    ip link set "$name-v$k" up
    shape "$name-v$k"                        # bridge -> host k
    shape eth0 ip netns exec "$ns"           # host k -> bridge
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n::1 localhost\n%s' "$names" > "/etc/netns/$ns/hosts"
    echo "$ns slots=1" >> "$state/hostfile"
  done
  remove_hosts_block
  { echo "$begin_mark"; printf '%s' "$names"; echo "$end_mark"; } >> /etc/hosts
  cat > "$state/settings" <<EOT
hosts=$n
subnet=$subnet.0/24
rate=${rate:-unshaped}
delay=${delay:-none}
EOT
  trap - EXIT
  say "up: $n hosts $name-h0..$name-h$((n - 1)) on $subnet.0/24 (bridge $bridge $subnet.254), rate ${rate:-unshaped}, delay ${delay:-none} per link direction"
  say "hostfile: $state/hostfile"
  local top
  top=$(cd "$(dirname "$0")/.." && pwd)
  say "run: mpirun --hostfile $state/hostfile -np $n --mca plm_rsh_agent $top/scripts/hosts-agent.sh --mca plm_rsh_no_tree_spawn 1 --mca btl tcp,self --mca btl_tcp_if_include $subnet.0/24 --mca oob_tcp_if_include $subnet.0/24 --mca mpi_yield_when_idle 1 --bind-to none -x OMP_NUM_THREADS=1 PROGRAM ..."
}

status() {
  if [ ! -d "$state" ]; then
    say "no hosts '$name' up"
    return 0
  fi
  cat "$state/settings"
  echo "hostfile $state/hostfile:"
  sed 's/^/  /' "$state/hostfile"
  local ns
  for ns in $(awk '{print $1}' "$state/hostfile"); do
    echo "$ns: $(ip -n "$ns" -o -4 addr show dev eth0 2>/dev/null | awk '{print $4}'), processes: $(ip netns pids "$ns" 2>/dev/null | wc -l)"
    ip netns exec "$ns" tc qdisc show dev eth0 2>/dev/null | sed 's/^/  egress: /'
  done
}

case "$cmd" in
  up) up ;;
  down) down; say "down: hosts '$name' removed" ;;
  status) status ;;
  check) why=$(probe) || skip "$why"; say "check: network namespaces, veth, bridges work here" ;;
  *) die "usage: $0 up N [--rate R] [--delay D] [--name P] [--subnet A.B.C] | down [--name P] | status [--name P] | check" ;;
esac
