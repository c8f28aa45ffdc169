#!/usr/bin/env bash
# Start-up cost of cachectl's link and entry-point choices, side by side in one run (issue 13):
# the same hits through several builds of cachectl, with bkt and the plain command beside them.
#
#   bench/startup.sh NAME=BINARY [NAME=BINARY ...]
#
# e.g. bench/startup.sh before=/work/bench-A-cachectl after=/work/bench-B-cachectl
#
# For each binary: instructions per `echo hello` hit (callgrind: repeatable, whatever the load),
# then one hyperfine invocation per case with every binary, bkt and the plain command: the
# `echo hello` hit, a 1 MiB stdout hit, and a compile hit (gcc -c of a small file with its
# header, the object declared as an output). Writes bench/results/startup.md, which
# bench/report.py puts into docs/benchmarks.md ("Start-up"). Needs hyperfine, valgrind, bkt
# (`cargo install bkt`) and gcc; installs nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${STARTUP_OUT:-$ROOT/bench/results/startup.md}
RUNS=${STARTUP_RUNS:-300}
(($# > 0)) || { sed -n '2,13p' "$0"; exit 2; }
for tool in hyperfine valgrind bkt gcc python3; do
  command -v "$tool" >/dev/null || { echo "startup.sh: $tool is not installed" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/cachectl-startup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
for v in $(compgen -e); do case $v in CACHECTL_*) unset "$v" ;; esac; done
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/config
mkdir -p "$XDG_CONFIG_HOME"
head -c 1048576 /dev/urandom >big.bin
printf '#include "greet.h"\nint greet(void) { return GREETING; }\n' >hello.c
printf '#define GREETING 42\n' >greet.h

names=()
bins=()
for arg in "$@"; do
  names+=("${arg%%=*}")
  bins+=("$(realpath "${arg#*=}")")
done

{
  echo "Measured $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores ($(uname -r)), load average at start $(cut -d' ' -f1-3 /proc/loadavg); \`bench/startup.sh $*\`."
  echo
  echo "| build | binary | size | instructions per \`echo hello\` hit (callgrind) |"
  echo "|---|---|---|---|"
} >"$OUT.tmp"

hello=()
onemib=()
compile=()
for i in "${!bins[@]}"; do
  n=${names[$i]} b=${bins[$i]}
  dir=$WORK/cache-$n
  # Fill each build's cache (two runs: the second is a hit that proves it).
  for _ in 1 2; do
    CACHECTL_DIR=$dir "$b" run -- echo hello >/dev/null
    CACHECTL_DIR=$dir "$b" run -- cat big.bin >/dev/null
    CACHECTL_DIR=$dir "$b" run -i hello.c -i '*.h' -o hello.o -- gcc -c hello.c -o hello.o
  done
  instr=$(CACHECTL_DIR=$dir valgrind --tool=callgrind --callgrind-out-file=/dev/null "$b" run -- echo hello 2>&1 >/dev/null |
    sed -n 's/.*Collected : //p')
  echo "| $n | \`$b\` | $(stat -c %s "$b") | $instr |" >>"$OUT.tmp"
  hello+=(-n "$n" "CACHECTL_DIR=$dir $b run -- echo hello")
  onemib+=(-n "$n" "CACHECTL_DIR=$dir $b run -- cat big.bin")
  compile+=(-n "$n" "CACHECTL_DIR=$dir $b run -i hello.c -i '*.h' -o hello.o -- gcc -c hello.c -o hello.o")
done
echo "| plain | \`/usr/bin/echo hello\` | | $(valgrind --tool=callgrind --callgrind-out-file=/dev/null /usr/bin/echo hello 2>&1 >/dev/null | sed -n 's/.*Collected : //p') |" >>"$OUT.tmp"
bkt --ttl=1h --cache-dir="$WORK/bkt" -- echo hello >/dev/null
bkt --ttl=1h --cache-dir="$WORK/bkt" -- cat big.bin >/dev/null

# hyperfine runs each command line through env(1) so that each build gets its own cache dir;
# `env` is the same small exec in every row, including bkt's and the plain command's.
run() {
  local title=$1
  shift
  echo >>"$OUT.tmp"
  echo "### $title" >>"$OUT.tmp"
  echo >>"$OUT.tmp"
  hyperfine -N --warmup 30 --runs "$RUNS" --export-json "$WORK/t.json" "$@" >/dev/null
  # Medians first: on a shared 2-core machine the mean and the max follow the neighbours.
  python3 - "$WORK/t.json" >>"$OUT.tmp" <<'PY'
import json, statistics, sys
rows = json.load(open(sys.argv[1]))["results"]
base = statistics.median(rows[-1]["times"])
print("| command | median [ms] | mean ± σ [ms] | min [ms] | median vs plain |")
print("|:---|---:|---:|---:|---:|")
for r in rows:
    t = r["times"]
    med = statistics.median(t)
    print(f"| `{r['command']}` | {med*1e3:.2f} | {r['mean']*1e3:.2f} ± {r['stddev']*1e3:.2f} | {min(t)*1e3:.2f} | {med/base:.2f}x |")
PY
}
env_cmd() { # NAME=... env command line for hyperfine -N
  local -a out=()
  while (($#)); do
    out+=("$1" "$2" "env $3")
    shift 3
  done
  printf '%s\0' "${out[@]}"
}
mapfile -d '' h < <(env_cmd "${hello[@]}")
run "\`echo hello\` hit" "${h[@]}" -n bkt "env bkt --ttl=1h --cache-dir=$WORK/bkt -- echo hello" -n plain "env echo hello"
mapfile -d '' m < <(env_cmd "${onemib[@]}")
run "1 MiB stdout hit" "${m[@]}" -n bkt "env bkt --ttl=1h --cache-dir=$WORK/bkt -- cat big.bin" -n plain "env cat big.bin"
mapfile -d '' c < <(env_cmd "${compile[@]}")
run "compile hit (\`gcc -c\`, one header, the object restored in place)" "${c[@]}" -n plain "env gcc -c hello.c -o hello.o"
mv "$OUT.tmp" "$OUT"
echo "startup.sh: wrote $OUT"
