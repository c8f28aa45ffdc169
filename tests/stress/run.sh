#!/usr/bin/env bash
# cachectl reliability stress (issue 7): bounded, randomized trials against the already built
# target/debug/cachectl. Four phases:
#
#   crash   kill -9 cachectl at random moments while it stores results of various sizes (tiny
#           stdout, 100 KiB, 5 MiB, mixed binary streams, a 1 MiB output file, an output
#           directory of 40 files, a symlink and an empty dir): 45% of the trials are timed into
#           the store phase (the command signals its end through a FIFO, the kill follows after
#           a random delay), 40% at a uniform moment of a forced run, 15% during a lookup (a
#           replay and output restore). After each kill the same key is run again and must give
#           the reference result (the command run without cachectl) byte for byte;
#           `cachectl verify` runs every 20 trials and must stay clean.
#   load    16 processes hammer 12 overlapping keys for a bounded time: hits, misses, --force,
#           output files, gc --max-size 300K, invalidate, ls/stats. Every output is a
#           deterministic function of its key and is checked; every command runs under a
#           timeout (a deadlock fails); verify must be clean at the end.
#   single  rounds of 16 identical concurrent misses: a command that takes 0.4 s, and one that
#           takes no time, must each run exactly once per round.
#   huge    a 2 GiB output file, stored and restored (streamed); peak RSS from /usr/bin/time -v
#           when it is installed.
#
# Prints a summary with the trial counts; exits non-zero on any failure. Nothing is tolerated:
# the bugs this script found (docs/reliability.md, "Bugs found") are fixed, and a return of any
# of them fails the run.
#
# Knobs (environment): STRESS_TRIALS (crash trials, default 300), STRESS_LOAD_SECONDS (30),
# STRESS_PROCS (16), STRESS_SINGLE_ROUNDS (15), STRESS_HUGE_MIB (2048, 0 skips the phase),
# STRESS_SEED (random), STRESS_KEEP=1 keeps the work dir, CACHECTL_BIN (the binary). The work
# dir is made in $TMPDIR (default /tmp) and needs about 4.2 GiB free for the 2 GiB phase.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${CACHECTL_BIN:-$ROOT/target/debug/cachectl}
TRIALS=${STRESS_TRIALS:-300}
LOAD_SECONDS=${STRESS_LOAD_SECONDS:-30}
PROCS=${STRESS_PROCS:-16}
SINGLE_ROUNDS=${STRESS_SINGLE_ROUNDS:-15}
HUGE_MIB=${STRESS_HUGE_MIB:-2048}
SEED=${STRESS_SEED:-$((($(date +%s%N) / 1000) % 1000000))}

if [ ! -x "$BIN" ]; then
  echo "stress: $BIN not found; build it first: cargo build" >&2
  exit 2
fi
if ((BASH_VERSINFO[0] < 5)); then
  echo "stress: needs bash >= 5 (EPOCHREALTIME)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cachectl-stress.XXXXXX")
chmod 755 "$WORK"
START=$EPOCHREALTIME
FAILS=0
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -9 -- "-$p" 2>/dev/null
    kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "${STRESS_KEEP:-}" = 1 ] || ((FAILS > 0)); then
    echo "stress: work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'echo "stress: interrupted"; exit 130' INT TERM

# A clean environment for cachectl: no CACHECTL_* from the caller, private HOME and config.
for v in $(compgen -e); do
  case $v in CACHECTL_*) [ "$v" = CACHECTL_BIN ] || unset "$v" ;; esac
done
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/config XDG_CACHE_HOME=$WORK/home/cache
mkdir -p "$XDG_CONFIG_HOME"
# Declared keys (`--trace off`): the phases count one entry per key and time the store; a
# traced run whose killed predecessor left files behind is keyed by them too, a second entry
# (tracing has its own tests: tests/integration/trace_auto.rs).
export CACHECTL_TRACE=off

now() { echo "$EPOCHREALTIME"; }
# Microseconds between two EPOCHREALTIME values.
us_between() {
  local a=${1/./} b=${2/./}
  echo $((10#$b - 10#$a))
}
elapsed() { printf '%.1f' "$(($(us_between "$START" "$(now)") / 100000))e-1"; }
log() { echo "[$(elapsed)s] $*"; }
fail() {
  FAILS=$((FAILS + 1))
  echo "FAIL: $*" | tee -a "$WORK/failures.log"
}
rand() { echo $(((RANDOM << 15 | RANDOM) % $1)); }
# randv VAR N: like rand, without a subshell (for the timing-critical path).
randv() {
  local -n _rv=$1
  _rv=$(((RANDOM << 15 | RANDOM) % $2))
}
# The file $1 without one leading or trailing `cachectl: warning` line, byte for byte.
strip_warning() {
  if head -c 17 "$1" | grep -aq '^cachectl: warning'; then
    tail -n +2 "$1"
  elif tail -n 1 "$1" | grep -aq '^cachectl: warning'; then
    head -n -1 "$1"
  else
    cat "$1"
  fi
}

# Sub-millisecond sleeps without forking: read with a timeout on a FIFO nobody writes to.
mkfifo "$WORK/sleep.fifo" "$WORK/done.fifo"
exec {SLEEP_FD}<>"$WORK/sleep.fifo" {DONE_FD}<>"$WORK/done.fifo"
sleep_us() {
  local us=$1
  ((us > 0)) || return 0
  local t
  printf -v t '%d.%06d' $((us / 1000000)) $((us % 1000000))
  read -r -t "$t" -u "$SLEEP_FD" _ || true
}

RANDOM=$SEED
log "cachectl stress: seed $SEED, binary $BIN, work dir $WORK"

# ---------------------------------------------------------------------------------------------
# Shared data: a 64 MiB pool of random bytes (the 2 GiB file is 32 copies of it).
# ---------------------------------------------------------------------------------------------
POOL=$WORK/pool.bin
head -c $((64 << 20)) /dev/urandom >"$POOL"
mkdir -p "$WORK/bin"

# ---------------------------------------------------------------------------------------------
# Phase 1: crash safety
# ---------------------------------------------------------------------------------------------
VARIANTS=(tiny k100 m5 mixed file dir)
IDS=4
CRASH_CMD=$WORK/bin/crashcmd
cat >"$CRASH_CMD" <<EOF
#!/bin/sh
# crashcmd VARIANT ID: deterministic output for (VARIANT, ID); counts real runs; writes a line to
# \$CRASH_FIFO (if set: the environment is not part of the key) when it is done, just before it
# exits.
v=\$1 id=\$2
echo run >>"$WORK/count/\$v.\$id"
off=\$((id * 4099 + 1))
case \$v in
  tiny) echo "tiny \$id"; echo "e \$id" >&2 ;;
  k100) tail -c +\$off "$POOL" | head -c 102400 ;;
  m5) tail -c +\$off "$POOL" | head -c 5242880 ;;
  mixed)
    tail -c +\$off "$POOL" | head -c 70000
    tail -c +\$((off + 70000)) "$POOL" | head -c 90000 >&2
    echo "between \$id"
    tail -c +\$((off + 200000)) "$POOL" | head -c 3000 >&2
    ;;
  file)
    mkdir -p out
    tail -c +\$off "$POOL" | head -c 1048576 >out/f.bin
    echo "file \$id"
    ;;
  dir)
    rm -rf d
    mkdir -p d/sub/deeper d/empty
    i=0
    while [ \$i -lt 40 ]; do
      n=\$((i * 1237 % 51200))
      case \$((i % 3)) in
        0) p=d ;; 1) p=d/sub ;; *) p=d/sub/deeper ;;
      esac
      tail -c +\$((off + i * 997)) "$POOL" | head -c \$n >\$p/f\$i.bin
      i=\$((i + 1))
    done
    chmod 755 d/f0.bin
    ln -s sub/f1.bin d/link
    echo "dir \$id"
    ;;
esac
if [ -n "\${CRASH_FIFO:-}" ]; then echo done >"\$CRASH_FIFO"; fi
exit 0
EOF
chmod 755 "$CRASH_CMD"

# Outputs each variant declares.
outputs_of() {
  case $1 in
    file) echo "-o out/f.bin" ;;
    dir) echo "-o d" ;;
    *) echo "" ;;
  esac
}

CRASH_CACHE=$WORK/crash-cache
mkdir -p "$WORK/count" "$WORK/ref" "$WORK/cw"

# Reference results: the command run directly, without cachectl.
for v in "${VARIANTS[@]}"; do
  for ((id = 0; id < IDS; id++)); do
    r=$WORK/ref/$v.$id
    mkdir -p "$r/tree" "$WORK/cw/$v.$id"
    (cd "$r/tree" && "$CRASH_CMD" "$v" "$id" >"$r/out" 2>"$r/err"; echo $? >"$r/code")
  done
done
rm -f "$WORK"/count/*.*

runs_of() { [ -f "$WORK/count/$1" ] && wc -l <"$WORK/count/$1" || echo 0; }

# Remove the declared outputs of variant $1 in work dir $2.
clear_outputs() {
  case $1 in
    file) rm -rf "$2/out" ;;
    dir) rm -rf "$2/d" ;;
  esac
}

# Compare the declared outputs in work dir $2 with the reference tree of key $3 (variant $1).
outputs_match() {
  case $1 in
    file) cmp -s "$WORK/ref/$3/tree/out/f.bin" "$2/out/f.bin" ;;
    dir) diff -r --no-dereference "$WORK/ref/$3/tree/d" "$2/d" >/dev/null 2>&1 &&
      [ "$(stat -c %a "$2/d/f0.bin")" = 755 ] ;;
    *) true ;;
  esac
}

CHECK_HITS=0
CHECK_MISSES=0
CHECK_WARNINGS=0

# Run key (variant $1, id $2) through cachectl without disturbance; check it against the
# reference byte for byte. Counts a hit (command did not run) or a miss.
check_key() {
  local v=$1 id=$2 key=$1.$2 dir=$WORK/cw/$1.$2 before after rc o e
  o=$WORK/check.out
  e=$WORK/check.err
  clear_outputs "$v" "$dir"
  before=$(runs_of "$key")
  # shellcheck disable=SC2046
  (cd "$dir" && CACHECTL_DIR=$CRASH_CACHE timeout -k 5 120 "$BIN" run $(outputs_of "$v") -- \
    "$CRASH_CMD" "$v" "$id" >"$o" 2>"$e")
  rc=$?
  after=$(runs_of "$key")
  if [ "$rc" != "$(cat "$WORK/ref/$key/code")" ]; then
    fail "crash check $key: exit $rc, expected $(cat "$WORK/ref/$key/code"): $(head -c 400 "$e")"
    return
  fi
  if ! cmp -s "$o" "$WORK/ref/$key/out"; then
    fail "crash check $key: stdout differs from the reference ($((after - before)) real runs)"
    cp "$o" "$WORK/fail.$key.out"
    return
  fi
  if grep -aq '^cachectl: warning' "$e"; then
    CHECK_WARNINGS=$((CHECK_WARNINGS + 1))
    echo "$key: $(grep -a '^cachectl: warning' "$e")" >>"$WORK/check-warnings.log"
  fi
  if ! strip_warning "$e" | cmp -s - "$WORK/ref/$key/err"; then
    fail "crash check $key: stderr differs from the reference"
    return
  fi
  if ! outputs_match "$v" "$dir" "$key"; then
    fail "crash check $key: output files differ from the reference"
    return
  fi
  if ((after == before)); then
    CHECK_HITS=$((CHECK_HITS + 1))
  else
    CHECK_MISSES=$((CHECK_MISSES + 1))
  fi
}

VERIFY_RUNS=0
VERIFY_CLEAN=0
# `cachectl verify` on cache $1 must exit 0: any problem fails (index drift after a kill -9,
# BUG-5; records whose blob a concurrent gc deleted, BUG-4; drift after a dropped record, BUG-6).
verify_cache() {
  local cache=$1 what=$2 rc report
  report=$WORK/verify.out
  VERIFY_RUNS=$((VERIFY_RUNS + 1))
  CACHECTL_DIR=$cache timeout -k 5 120 "$BIN" verify >"$report" 2>&1
  rc=$?
  if ((rc == 0)); then
    VERIFY_CLEAN=$((VERIFY_CLEAN + 1))
    return
  fi
  fail "$what: cachectl verify exit $rc:"
  sed 's/^/    /' "$report" | head -20
  cp "$report" "$WORK/verify-failure.$VERIFY_RUNS.txt"
}

# Calibrate: for each variant, the whole miss (T) and the time from the command's end to
# cachectl's exit (S, the store phase), in microseconds.
declare -A T_US S_US H_US
for v in "${VARIANTS[@]}"; do
  d=$WORK/calib/$v
  mkdir -p "$d"
  c=$WORK/calib-cache
  t_total=0 s_total=0 h_total=0
  for i in 1 2 3; do
    # shellcheck disable=SC2046
    t0=$(now)
    (cd "$d" && CACHECTL_DIR=$c CRASH_FIFO=$WORK/done.fifo exec "$BIN" run --force \
      $(outputs_of "$v") -- "$CRASH_CMD" "$v" 0 >/dev/null 2>&1) &
    pid=$!
    read -r -t 60 -u "$DONE_FD" _
    t1=$(now)
    wait "$pid"
    t2=$(now)
    t_total=$((t_total + $(us_between "$t0" "$t2")))
    s_total=$((s_total + $(us_between "$t1" "$t2")))
  done
  for i in 1 2 3; do
    t0=$(now)
    # shellcheck disable=SC2046
    (cd "$d" && CACHECTL_DIR=$c exec "$BIN" run $(outputs_of "$v") -- "$CRASH_CMD" "$v" 0 \
      >/dev/null 2>&1)
    h_total=$((h_total + $(us_between "$t0" "$(now)")))
  done
  # Kill windows a little shorter than the mean, so that most kills land before cachectl exits.
  T_US[$v]=$((t_total * 4 / 15))
  S_US[$v]=$((s_total * 4 / 15 + 300))
  H_US[$v]=$((h_total * 4 / 15))
done
rm -rf "$WORK/calib-cache" "$WORK/calib"
rm -f "$WORK"/count/*.*
calib=""
for v in "${VARIANTS[@]}"; do
  calib+=" $v=$((T_US[$v] * 15 / 4000))ms(store $((S_US[$v] * 15 / 4000))ms, hit $((H_US[$v] * 15 / 4000))ms)"
done
log "phase crash: $TRIALS trials, timings:$calib"

KILLED_STORE=0
KILLED_UNIFORM=0
KILLED_HIT=0
declare -A KILLS_BY=()
LATE=0
FORCED=0
crash_start=$(now)
for ((trial = 1; trial <= TRIALS; trial++)); do
  v=${VARIANTS[$(rand ${#VARIANTS[@]})]}
  id=$(rand $IDS)
  dir=$WORK/cw/$v.$id
  # 45%: killed in the store phase; 40%: at a uniform moment of a forced run; 15%: during a
  # lookup (usually a hit: replay and output restore).
  randv m 20
  if ((m < 9)); then mode=store; elif ((m < 17)); then mode=uniform; else mode=hit; fi
  force=""
  if [ "$mode" != hit ]; then
    force=--force
    FORCED=$((FORCED + 1))
  fi
  fifo=""
  [ "$mode" = store ] && fifo=$WORK/done.fifo
  # The kill delay, drawn before the launch: nothing forks between the cue and the kill.
  case $mode in
    store) randv delay "${S_US[$v]}" ;;
    uniform) randv delay "${T_US[$v]}" ;;
    *) randv delay "${H_US[$v]}" ;;
  esac
  # Its own process group, so that the command (and its children) can be cleaned up after
  # cachectl is killed.
  # shellcheck disable=SC2046
  (cd "$dir" && CACHECTL_DIR=$CRASH_CACHE CRASH_FIFO=$fifo exec setsid "$BIN" run $force \
    $(outputs_of "$v") -- "$CRASH_CMD" "$v" "$id" >/dev/null 2>&1) &
  pid=$!
  PIDS+=("$pid")
  if [ "$mode" = store ]; then
    if ! read -r -t 60 -u "$DONE_FD" _; then
      fail "crash trial $trial ($v.$id): the command did not finish within 60 s"
    fi
  fi
  sleep_us "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rc=$?
  kill -9 -- "-$pid" 2>/dev/null
  unset 'PIDS[-1]'
  if ((rc == 137)); then
    KILLS_BY[$v]=$((${KILLS_BY[$v]:-0} + 1))
    case $mode in
      store) KILLED_STORE=$((KILLED_STORE + 1)) ;;
      uniform) KILLED_UNIFORM=$((KILLED_UNIFORM + 1)) ;;
      *) KILLED_HIT=$((KILLED_HIT + 1)) ;;
    esac
  else
    LATE=$((LATE + 1))
  fi
  # A killed command may still be writing its outputs for a moment: let the group die.
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$pid" 2>/dev/null || break; sleep_us 20000; done
  check_key "$v" "$id"
  if ((trial % 20 == 0)); then
    verify_cache "$CRASH_CACHE" "crash trial $trial"
  fi
done
# Finally every key, and a last verify.
for v in "${VARIANTS[@]}"; do
  for ((id = 0; id < IDS; id++)); do check_key "$v" "$id"; done
done
verify_cache "$CRASH_CACHE" "end of the crash phase"
CRASH_ENTRIES=$(find "$CRASH_CACHE/ac-v1" -type f | wc -l)
# The final checks stored every key: exactly one entry per key (trials and checks share keys).
if ((CRASH_ENTRIES != ${#VARIANTS[@]} * IDS)); then
  fail "crash: $CRASH_ENTRIES entries at the end, expected $((${#VARIANTS[@]} * IDS)) (one per key)"
fi
CRASH_SECONDS=$(($(us_between "$crash_start" "$(now)") / 1000000))
log "phase crash done: $((KILLED_STORE + KILLED_UNIFORM + KILLED_HIT)) kills, $CHECK_HITS byte-exact hits"

# ---------------------------------------------------------------------------------------------
# Phase 2: load (and phase 3: single execution)
# ---------------------------------------------------------------------------------------------
LOAD=$WORK/load
LOAD_CACHE=$WORK/load-cache
LOAD_KEYS=12
mkdir -p "$LOAD/exp" "$LOAD/count"
LOAD_CMD=$WORK/bin/loadcmd
cat >"$LOAD_CMD" <<EOF
#!/bin/sh
# loadcmd K [file]: output is a function of K only; K=11 exits 3; sleeps a little (not keyed).
k=\$1
echo run >>"$LOAD/count/\$k"
case \$((k % 4)) in 0) n=20 ;; 1) n=2048 ;; 2) n=102400 ;; *) n=409600 ;; esac
sleep 0.0\$((k % 5))
printf 'key %s\n' "\$k"
tail -c +\$((k * 5003 + 1)) "$POOL" | head -c \$n
printf 'err %s\n' "\$k" >&2
if [ "\${2:-}" = file ]; then tail -c +\$((k * 77 + 1)) "$POOL" | head -c 20000 >out.bin; fi
if [ "\$k" = 11 ]; then exit 3; fi
exit 0
EOF
chmod 755 "$LOAD_CMD"
for ((k = 0; k < LOAD_KEYS; k++)); do
  (cd "$LOAD/exp" && "$LOAD_CMD" "$k" file >"$k.out" 2>"$k.err"; echo $? >"$k.code"; mv out.bin "$k.file")
done
rm -f "$LOAD"/count/*

# No index yet: the load's first management commands create it concurrently (BUG-3).

# One worker: random operations until $2 (epoch seconds); writes its counters to $LOAD/w$1.stats.
worker() {
  local i=$1 until=$2 dir=$LOAD/w$1 k op rc o e n_run=0 n_force=0 n_file=0 n_gc=0 n_inv=0 n_ro=0 n_bad=0 n_timeout=0 n_warn=0
  mkdir -p "$dir"
  cd "$dir" || return
  RANDOM=$((SEED + i * 7919))
  o=$dir/o
  e=$dir/e
  export CACHECTL_DIR=$LOAD_CACHE
  while ((EPOCHSECONDS < until)); do
    k=$((RANDOM % LOAD_KEYS))
    op=$((RANDOM % 20))
    if ((op < 14)); then
      local args=(--no-cwd --cache-failures) kind=run
      if ((op >= 12)); then
        args+=(--force)
        kind=force
      fi
      local extra=()
      if ((op == 11)); then
        args+=(-o out.bin)
        extra=(file)
        kind=file
        rm -f out.bin
      fi
      timeout -k 5 60 "$BIN" run "${args[@]}" -- "$LOAD_CMD" "$k" "${extra[@]}" >"$o" 2>"$e"
      rc=$?
      case $kind in run) n_run=$((n_run + 1)) ;; force) n_force=$((n_force + 1)) ;; file) n_file=$((n_file + 1)) ;; esac
      if ((rc == 124 || rc == 137)); then
        n_timeout=$((n_timeout + 1))
        echo "w$i: TIMEOUT (deadlock?) $kind key $k" >>"$LOAD/failures"
        continue
      fi
      local bad=""
      [ "$rc" = "$(cat "$LOAD/exp/$k.code")" ] || bad="exit $rc"
      cmp -s "$o" "$LOAD/exp/$k.out" || bad="$bad stdout"
      strip_warning "$e" | cmp -s - "$LOAD/exp/$k.err" || bad="$bad stderr"
      local w
      w=$(grep -c '^cachectl: warning' "$e")
      ((w <= 1)) || bad="$bad $w-warnings"
      ((w == 0)) || { n_warn=$((n_warn + 1)); grep '^cachectl: warning' "$e" | head -1 >>"$LOAD/warnings"; }
      if [ "$kind" = file ] && [ "$k" != 11 ]; then
        cmp -s out.bin "$LOAD/exp/$k.file" || bad="$bad out.bin"
      fi
      if [ -n "$bad" ]; then
        n_bad=$((n_bad + 1))
        echo "w$i: WRONG RESULT ($bad) for $kind key $k: $(head -c 300 "$e")" >>"$LOAD/failures"
      fi
    else
      local margs
      case $op in
        14 | 15) margs=(gc --max-size 300K) ;;
        16) margs=(invalidate --all) ;;
        17) margs=(invalidate "$LOAD_CMD $((RANDOM % LOAD_KEYS))*") ;;
        18) margs=(ls) ;;
        *) margs=(stats) ;;
      esac
      timeout -k 5 60 "$BIN" "${margs[@]}" >"$o" 2>"$e"
      rc=$?
      case $op in 14 | 15) n_gc=$((n_gc + 1)) ;; 16 | 17) n_inv=$((n_inv + 1)) ;; *) n_ro=$((n_ro + 1)) ;; esac
      if ((rc == 124 || rc == 137)); then
        n_timeout=$((n_timeout + 1))
        echo "w$i: TIMEOUT (deadlock?) ${margs[*]}" >>"$LOAD/failures"
      elif ((rc != 0)); then
        # Including `database is locked` (BUG-2): every management command must succeed.
        n_bad=$((n_bad + 1))
        echo "w$i: ${margs[*]} exit $rc: $(head -c 300 "$e")" >>"$LOAD/failures"
      fi
    fi
  done
  echo "$n_run $n_force $n_file $n_gc $n_inv $n_ro $n_bad $n_timeout $n_warn" >"$LOAD/w$i.stats"
}

log "phase load: $PROCS processes x ${LOAD_SECONDS}s on $LOAD_KEYS keys"
load_start=$(now)
until_s=$((EPOCHSECONDS + LOAD_SECONDS))
wpids=()
for ((i = 0; i < PROCS; i++)); do
  worker "$i" "$until_s" &
  wpids+=($!)
  PIDS+=($!)
done
# Bound: the workers stop starting commands at until_s; each command is bounded by its timeout.
deadline=$((until_s + 150))
for p in "${wpids[@]}"; do
  while kill -0 "$p" 2>/dev/null && ((EPOCHSECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$p" 2>/dev/null; then
    fail "load: worker $p still running 150 s after the end: deadlock"
    kill -9 "$p" 2>/dev/null
  fi
  wait "$p" 2>/dev/null
done
PIDS=()
L=(0 0 0 0 0 0 0 0 0)
for f in "$LOAD"/w*.stats; do
  read -r -a s <"$f"
  for j in "${!L[@]}"; do L[j]=$((L[j] + s[j])); done
done
LOAD_OPS=$((L[0] + L[1] + L[2] + L[3] + L[4] + L[5]))
LOAD_SECONDS_REAL=$(($(us_between "$load_start" "$(now)") / 1000000))
if [ -s "$LOAD/failures" ]; then
  fail "load: $(wc -l <"$LOAD/failures") failures, first: $(head -3 "$LOAD/failures")"
fi
verify_cache "$LOAD_CACHE" "end of the load phase"
LOAD_REAL_RUNS=$(cat "$LOAD"/count/* 2>/dev/null | wc -l)
# Every key still gives the right result afterwards.
for ((k = 0; k < LOAD_KEYS; k++)); do
  (cd "$LOAD/w0" && CACHECTL_DIR=$LOAD_CACHE "$BIN" run --no-cwd --cache-failures -- "$LOAD_CMD" "$k" \
    >"$LOAD/final.out" 2>/dev/null)
  rc=$?
  { [ "$rc" = "$(cat "$LOAD/exp/$k.code")" ] && cmp -s "$LOAD/final.out" "$LOAD/exp/$k.out"; } ||
    fail "load: key $k wrong after the load"
done
log "phase load done: $LOAD_OPS operations, ${L[6]} wrong, ${L[7]} timeouts"

SINGLE=$WORK/single
mkdir -p "$SINGLE"
SLOW_CMD=$WORK/bin/slowcmd
cat >"$SLOW_CMD" <<EOF
#!/bin/sh
echo run >>"$SINGLE/count"
sleep 0.4
tail -c +777 "$POOL" | head -c 150000
echo done
EOF
chmod 755 "$SLOW_CMD"
(cd "$SINGLE" && "$SLOW_CMD" >"$SINGLE/exp" 2>/dev/null)
: >"$SINGLE/count"
log "phase single: $SINGLE_ROUNDS rounds x $PROCS identical concurrent misses"
SINGLE_OK=0
for ((r = 1; r <= SINGLE_ROUNDS; r++)); do
  before=$(wc -l <"$SINGLE/count")
  spids=()
  for ((p = 0; p < PROCS; p++)); do
    mkdir -p "$SINGLE/p$p"
    (cd "$SINGLE/p$p" && CACHECTL_DIR=$LOAD_CACHE timeout -k 5 60 "$BIN" run --no-cwd \
      --salt "single-$SEED-$r" -- "$SLOW_CMD" >"$SINGLE/p$p/out" 2>"$SINGLE/p$p/err"; echo $? >"$SINGLE/p$p/rc") &
    spids+=($!)
  done
  wait "${spids[@]}"
  runs=$(($(wc -l <"$SINGLE/count") - before))
  bad=0
  for ((p = 0; p < PROCS; p++)); do
    { [ "$(cat "$SINGLE/p$p/rc")" = 0 ] && cmp -s "$SINGLE/p$p/out" "$SINGLE/exp"; } || bad=$((bad + 1))
  done
  if ((runs == 1 && bad == 0)); then
    SINGLE_OK=$((SINGLE_OK + 1))
  else
    fail "single round $r: the command ran $runs times for $PROCS identical concurrent misses; $bad wrong results"
  fi
done
# The same with a command that takes no time: a run that takes the lock after the first one
# has stored and released it must look again and hit, not run it a second time (BUG-13).
FAST_CMD=$WORK/bin/fastcmd
printf '#!/bin/sh\necho run >>"%s/fastcount"\necho fast\n' "$SINGLE" >"$FAST_CMD"
chmod 755 "$FAST_CMD"
: >"$SINGLE/fastcount"
FAST_ROUNDS=$((SINGLE_ROUNDS * 4))
FAST_ONCE=0
FAST_EXTRA=0
for ((r = 1; r <= FAST_ROUNDS; r++)); do
  before=$(wc -l <"$SINGLE/fastcount")
  spids=()
  for ((p = 0; p < PROCS; p++)); do
    (cd "$SINGLE/p$p" && CACHECTL_DIR=$LOAD_CACHE timeout -k 5 60 "$BIN" run --no-cwd \
      --salt "fast-$SEED-$r" -- "$FAST_CMD" >"$SINGLE/p$p/out" 2>"$SINGLE/p$p/err"; echo $? >"$SINGLE/p$p/rc") &
    spids+=($!)
  done
  wait "${spids[@]}"
  runs=$(($(wc -l <"$SINGLE/fastcount") - before))
  for ((p = 0; p < PROCS; p++)); do
    { [ "$(cat "$SINGLE/p$p/rc")" = 0 ] && [ "$(cat "$SINGLE/p$p/out")" = fast ]; } ||
      fail "fast single round $r: process $p: wrong result"
  done
  if ((runs == 1)); then
    FAST_ONCE=$((FAST_ONCE + 1))
  elif ((runs > 1)); then
    FAST_EXTRA=$((FAST_EXTRA + runs - 1))
    fail "fast single round $r: the command ran $runs times for $PROCS identical concurrent misses"
  else
    fail "fast single round $r: the command never ran"
  fi
done
verify_cache "$LOAD_CACHE" "end of the single-execution phase"

# ---------------------------------------------------------------------------------------------
# Phase 4: a 2 GiB output file, streamed
# ---------------------------------------------------------------------------------------------
HUGE_NOTE="skipped (STRESS_HUGE_MIB=0)"
if ((HUGE_MIB > 0)); then
  HUGE=$WORK/huge
  HUGE_CACHE=$WORK/huge-cache
  mkdir -p "$HUGE"
  copies=$(((HUGE_MIB + 63) / 64))
  HUGE_BYTES=$((copies * (64 << 20)))
  BIG_CMD=$WORK/bin/bigcmd
  cat >"$BIG_CMD" <<EOF
#!/bin/sh
# $copies copies of the 64 MiB random pool: incompressible within zstd's window.
i=0
while [ \$i -lt $copies ]; do cat "$POOL"; i=\$((i + 1)); done >big.bin
echo wrote
EOF
  chmod 755 "$BIG_CMD"
  gen_big() {
    local i
    for ((i = 0; i < copies; i++)); do cat "$POOL"; done
  }
  TIMEV=""
  if /usr/bin/time -v true >/dev/null 2>&1; then TIMEV=/usr/bin/time; fi
  measure() { # measure LABEL CMD...: runs CMD, sets M_RC, M_RSS_KB, M_SECONDS
    local label=$1 t0 t1
    shift
    t0=$(now)
    if [ -n "$TIMEV" ]; then
      "$TIMEV" -v -o "$HUGE/$label.time" "$@"
      M_RC=$?
      M_RSS_KB=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$HUGE/$label.time")
    else
      "$@"
      M_RC=$?
      M_RSS_KB="n/a (/usr/bin/time not installed)"
    fi
    t1=$(now)
    M_SECONDS=$(printf '%.1f' "$(($(us_between "$t0" "$t1") / 100000))e-1")
  }
  log "phase huge: ${HUGE_BYTES} bytes output file"
  cd "$HUGE" || exit 1
  export CACHECTL_DIR=$HUGE_CACHE
  measure store "$BIN" run -o big.bin -- "$BIG_CMD" >"$HUGE/store.out" 2>"$HUGE/store.err"
  STORE_RC=$M_RC STORE_RSS=$M_RSS_KB STORE_S=$M_SECONDS
  BLOB_BYTES=$(du -sb "$HUGE_CACHE/cas-v1" | cut -f1)
  rm -f big.bin
  measure hit "$BIN" run -v -o big.bin -- "$BIG_CMD" >"$HUGE/hit.out" 2>"$HUGE/hit.err"
  HIT_RC=$M_RC HIT_RSS=$M_RSS_KB HIT_S=$M_SECONDS
  cd "$WORK" || exit 1
  unset CACHECTL_DIR
  huge_ok=1
  if [ "$STORE_RC" != 0 ] || [ "$HIT_RC" != 0 ]; then
    fail "huge: exit codes store=$STORE_RC hit=$HIT_RC: $(head -c 300 "$HUGE/store.err") $(head -c 300 "$HUGE/hit.err")"
    huge_ok=0
  fi
  if ! grep -q '^cachectl: hit' "$HUGE/hit.err"; then
    fail "huge: the second run was not a hit: $(head -c 300 "$HUGE/hit.err")"
    huge_ok=0
  fi
  if [ "$(stat -c %s "$HUGE/big.bin" 2>/dev/null)" != "$HUGE_BYTES" ] || ! gen_big | cmp -s - "$HUGE/big.bin"; then
    fail "huge: the restored file is not byte-exact"
    huge_ok=0
  fi
  if [ "$(cat "$HUGE/store.out")" != wrote ] || [ "$(cat "$HUGE/hit.out")" != wrote ]; then
    fail "huge: stdout differs"
    huge_ok=0
  fi
  HUGE_NOTE="$((HUGE_BYTES >> 20)) MiB file: store ${STORE_S}s (peak RSS ${STORE_RSS} KiB), restore ${HIT_S}s (peak RSS ${HIT_RSS} KiB), blob $((BLOB_BYTES >> 20)) MiB on disk, $([ $huge_ok = 1 ] && echo byte-exact || echo FAILED)"
  rm -rf "$HUGE" "$HUGE_CACHE"
fi

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
echo
echo "== cachectl stress summary (seed $SEED, $(elapsed)s)"
echo "crash:  $TRIALS trials in ${CRASH_SECONDS}s over ${#VARIANTS[@]} kinds x $IDS keys; kill -9 injected: $((KILLED_STORE + KILLED_UNIFORM + KILLED_HIT)) ($KILLED_STORE timed into the store phase, $KILLED_UNIFORM at a uniform moment of a forced run, $KILLED_HIT during a lookup/replay), $LATE landed after cachectl had exited; $FORCED --force"
kills_by=""
for v in "${VARIANTS[@]}"; do kills_by+=" $v=${KILLS_BY[$v]:-0}"; done
echo "        kills by kind:$kills_by"
echo "        checks after each kill + final: $((CHECK_HITS + CHECK_MISSES)) runs byte-exact vs the reference ($CHECK_HITS hits, $CHECK_MISSES misses), $CHECK_WARNINGS with a warning; $CRASH_ENTRIES entries at the end"
echo "verify: $VERIFY_RUNS runs, $VERIFY_CLEAN clean"
echo "load:   $PROCS processes x ${LOAD_SECONDS_REAL}s, $LOAD_OPS operations: ${L[0]} runs, ${L[1]} --force, ${L[2]} with an output file, ${L[3]} gc --max-size 300K, ${L[4]} invalidate, ${L[5]} ls/stats; $LOAD_REAL_RUNS real command runs"
echo "        wrong results or failed commands: ${L[6]}, timeouts: ${L[7]}, runs with a warning: ${L[8]}"
if [ -s "$LOAD/warnings" ]; then
  echo "        warnings by kind (at most one per run):"
  sed -E 's/ \(.*//; s/[0-9a-f]{12,}/<hash>/g' "$LOAD/warnings" | sort | uniq -c | sort -rn | head -5 | sed 's/^/         /'
fi
echo "single: $SINGLE_OK/$SINGLE_ROUNDS rounds of $PROCS identical concurrent misses (0.4 s command) ran the command exactly once"
echo "        fast command: $FAST_ONCE/$FAST_ROUNDS rounds ran it exactly once ($FAST_EXTRA extra runs)"
echo "huge:   $HUGE_NOTE"
if ((FAILS > 0)); then
  echo "result: FAIL ($FAILS failures; details in $WORK/failures.log)"
  exit 1
fi
echo "result: PASS"
