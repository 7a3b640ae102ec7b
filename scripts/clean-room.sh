#!/usr/bin/env bash
# The clean room: proves the README's set-up commands on a fresh, minimal Debian 12 (bookworm).
# Builds a debootstrap --variant=minbase root under build/clean-room/, copies the committed tree
# into it (git archive HEAD: an untracked file cannot make it pass), and runs the commands inside.
#
#   scripts/clean-room.sh                      # runs "make demo" then "make test" (the README's two)
#   scripts/clean-room.sh "make demo"          # any commands, each one shell line, run in order
#
# Needs root (debootstrap, chroot, mount). Everything it mounts lives in a private mount namespace
# (unshare), so the mounts go away with the run on every exit path, even SIGKILL; a trap also
# unmounts them on failure and Ctrl-C. The bare debootstrap root (nothing the project installed)
# is cached as a tarball in $TSP_CLEAN_ROOM_CACHE (default ~/.cache/tsp/clean-room); delete it to
# bootstrap anew. The only thing installed before the commands run is `make`, which the README
# names as the one prerequisite. Environment: TSP_CLEAN_ROOM_MIRROR (default deb.debian.org),
# TSP_CLEAN_ROOM_KEEP=1 keeps the root after a successful run (it is always kept after a failure).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
work="$top/build/clean-room"
root="$work/root"
log="$work/log.txt"
suite=bookworm
mirror=${TSP_CLEAN_ROOM_MIRROR:-http://deb.debian.org/debian}
cache_dir=${TSP_CLEAN_ROOM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tsp/clean-room}
cache="$cache_dir/$suite-minbase.tar"
in_root_dir=/root/tsp   # where the tree lies inside the root

say() { printf 'clean-room: %s\n' "$*"; }
die() { printf 'clean-room: error: %s\n' "$*" >&2; exit 1; }

# --- inside the private mount namespace: mount, chroot, run, unmount -----------------------------
if [ "${1:-}" = "--inside" ]; then
  shift
  mounted=()
  cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  }
  child=""
  # The commands run in a session of their own (setsid), so that an interrupted run stops all of
  # them (make, compilers, mpirun and its ranks), not only the shell that started them.
  stop() {
    if [ -n "$child" ]; then kill -TERM -- "-$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
    exit "$1"
  }
  trap cleanup EXIT
  trap 'stop 130' INT
  trap 'stop 143' TERM
  mnt() { mount "$@"; mounted+=("${!#}"); }
  # What Open MPI and the build need: processes, devices (null, urandom, pts), shared memory, sysfs
  # (hwloc reads the topology there).
  mnt -t proc proc "$root/proc"
  mnt -t sysfs -o ro sysfs "$root/sys"
  mnt --bind /dev "$root/dev"
  mnt -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  mnt -t tmpfs -o size=50%,mode=1777 tmpfs "$root/dev/shm"
  status=0
  for cmd in "$@"; do
    start=$SECONDS
    say "running '$cmd' in $in_root_dir"
    # A fresh machine's environment: none of the caller's variables (no CI tokens, no paths).
    setsid env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$root" /bin/bash -c "cd $in_root_dir && $cmd" </dev/null &
    child=$!
    wait "$child" || status=$?
    child=""
    say "phase '$cmd': $((SECONDS - start)) s, exit $status"
    [ "$status" -eq 0 ] || break
  done
  exit "$status"
fi

# --- outside: prepare the root, then run the commands in a private mount namespace ---------------
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount); run it with sudo"
[ $# -gt 0 ] || set -- "make demo" "make test"
git -C "$top" rev-parse --verify -q HEAD >/dev/null || die "$top is not a git checkout with a commit"

# Anything still mounted under the root (a run killed before its namespace ended) is refused, never
# deleted through: rm on a root with /dev bound inside would reach the host's files.
still_mounted() { findmnt -rn -o TARGET | grep -q "^$root\(/\|$\)"; }
remove_root() {
  if still_mounted; then die "something is still mounted under $root; unmount it (umount -R $root)"; fi
  rm -rf --one-file-system "$root"
}

mkdir -p "$work"
exec > >(tee "$log") 2>&1
t0=$SECONDS
[ -z "$(git -C "$top" status --porcelain)" ] ||
  say "note: the work tree has uncommitted changes; the clean room tests the last commit only"
say "$(date -u '+%F %T') UTC, commit $(git -C "$top" rev-parse --short HEAD), $(nproc) cores," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

# Phase 1: the bare root (cached), then the committed tree.
phase=$SECONDS
remove_root
if [ ! -s "$cache" ]; then
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  say "debootstrap --variant=minbase $suite from $mirror"
  mkdir -p "$cache_dir"
  # In its own mount namespace too: debootstrap mounts /proc in the target while it works.
  unshare --mount --propagation private \
    debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log"; die "debootstrap failed (whole log: $work/debootstrap.log)"; }
  tmp=$(mktemp "$cache.tmp.XXXXXX")
  tar -C "$root" --numeric-owner -cf "$tmp" . && mv "$tmp" "$cache"
  say "cached the bare root in $cache"
else
  say "bare root from the cache $cache"
  mkdir -p "$root"
  tar -C "$root" --numeric-owner -xf "$cache"
fi
# The host's package sources and network settings (a fresh machine here reaches the same mirrors);
# nothing else of the host enters the root.
cp /etc/resolv.conf /etc/hosts "$root/etc/" 2>/dev/null || true
if [ -d /etc/apt/sources.list.d ] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
  : > "$root/etc/apt/sources.list"
fi
for f in /etc/apt/apt.conf.d/*; do
  if [ -f "$f" ] && grep -q '^ *Acquire' "$f"; then cp "$f" "$root/etc/apt/apt.conf.d/"; fi
done
mkdir -p "$root$in_root_dir"
git -C "$top" archive --format=tar HEAD | tar -C "$root$in_root_dir" -xf -
say "phase root: $((SECONDS - phase)) s"

# Runs commands inside, in a private mount namespace; INT/TERM reach the commands (see --inside).
inner=""
run_inside() {
  unshare --mount --propagation private bash "$top/scripts/clean-room.sh" --inside "$@" &
  inner=$!
  local rc=0
  wait "$inner" || rc=$?
  inner=""
  return "$rc"
}
trap 'if [ -n "$inner" ]; then kill -TERM "$inner" 2>/dev/null; wait "$inner"; fi; exit 130' INT
trap 'if [ -n "$inner" ]; then kill -TERM "$inner" 2>/dev/null; wait "$inner"; fi; exit 143' TERM

# Phase 2: the one prerequisite the README names before its two commands.
phase=$SECONDS
run_inside "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make >/dev/null"
say "phase prerequisite (apt-get install make): $((SECONDS - phase)) s"

# Phase 3: the commands, exactly as a user types them.
status=0
run_inside "$@" || status=$?
say "total: $((SECONDS - t0)) s, exit $status"
sleep 1  # let tee write out the last lines before the log is read
# One closing line over every ctest run inside ("N% tests passed, F tests failed out of T").
summary=$(sed -n 's/^[0-9]*% tests passed, \([0-9]*\) tests\{0,1\} failed out of \([0-9]*\).*/\1 \2/p' "$log" |
  awk '{ f += $1; t += $2; n++ } END { if (n) printf "%d %d %d", t - f, f, n }')
say "phases:"
grep -E '^clean-room: phase |^install-deps: installed|^build: |Total Test time|^test-isa-avx2: ' "$log" | sed 's/^/    /' || true
if [ "$status" -ne 0 ]; then
  say "the root is kept for inspection: $root (chroot $root /bin/bash)"
  [ -z "$summary" ] || { read -r passed failed runs <<<"$summary"; echo "clean-room: $passed passed, $failed failed"; }
  exit "$status"
fi
[ "${TSP_CLEAN_ROOM_KEEP:-0}" = 1 ] || remove_root
if [ -n "$summary" ]; then
  read -r passed failed runs <<<"$summary"
  say "$runs ctest runs inside the clean room"
  echo "clean-room: $passed passed, $failed failed"
else
  say "passed"
fi
