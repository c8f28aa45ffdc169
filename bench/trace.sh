#!/usr/bin/env bash
# `--trace auto` against `--trace off`, ccache and the plain command, side by side (issue 14):
#
#   bench/trace.sh [CACHECTL_BINARY]     (default: $CARGO_TARGET_DIR/release/cachectl, else
#                                          target/release/cachectl)
#
#   1. miss overhead on a real build: the zstd library (its C sources, from the zstd-sys crate
#      in cargo's registry) with `make -j2`, each compile wrapped, every run a miss (--force);
#   2. miss overhead on a syscall-heavy command: find + cat over 10 000 small files;
#   3. the zero-configuration build `make -j2 CC="cachectl run --trace auto -- gcc"`: objects
#      against a plain build's, a warm rebuild after `make clean` against ccache's, and which
#      compiles run again after one header changes;
#   4. hits: one traced compile (zstd_compress.c, ~60 headers) against ccache's direct-mode hit
#      and a declared (`--trace off -o`) hit; `echo hello` under auto and off.
#
# Writes bench/results/trace_auto.md (hyperfine tables and the checks); docs/benchmarks.md
# ("Tracing") quotes it. Needs hyperfine, ccache, gcc, make; installs nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${TRACE_OUT:-$ROOT/bench/results/trace_auto.md}
C=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/cachectl}
[ -x "$C" ] || { echo "trace.sh: no cachectl at $C (cargo build --release)" >&2; exit 2; }
for tool in hyperfine ccache gcc make; do
  command -v "$tool" >/dev/null || { echo "trace.sh: $tool is not installed" >&2; exit 2; }
done
ZSTD=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/zstd-sys-*/zstd/lib 2>/dev/null | sort | tail -1)
[ -n "$ZSTD" ] || { echo "trace.sh: zstd-sys sources not found (cargo fetch)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/cachectl-trace.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for v in $(compgen -e); do case $v in CACHECTL_*|CCACHE_*) unset "$v" ;; esac; done
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/config CCACHE_DIR=$WORK/ccache
mkdir -p "$XDG_CONFIG_HOME"
R=$WORK/results
mkdir -p "$R"
note() { printf -- '- %s\n' "$*" >>"$R/notes.md"; printf '%s\n' "$*" >&2; }
table() { cat "$R/$1.md" >>"$R/tables.md"; echo >>"$R/tables.md"; }

# The zstd library with a Makefile of our own: every .c of the library (no assembly), one
# object each, then libzstd.a.
src=$WORK/zstd
mkdir -p "$src"
cp -r "$ZSTD"/common "$ZSTD"/compress "$ZSTD"/decompress "$ZSTD"/dictBuilder "$ZSTD"/*.h "$src"/
cat >"$src/Makefile" <<'EOF'
CC ?= gcc
CFLAGS = -O2 -I. -Icommon -DZSTD_DISABLE_ASM -DXXH_NAMESPACE=ZSTD_
SRCS := $(sort $(wildcard common/*.c compress/*.c decompress/*.c dictBuilder/*.c))
OBJS := $(SRCS:.c=.o)
libzstd.a: $(OBJS)
	ar rcs $@ $^
%.o: %.c
	$(CC) $(CFLAGS) -c $< -o $@
clean:
	rm -f $(OBJS) libzstd.a
EOF
cd "$src"
nobj=$(ls common/*.c compress/*.c decompress/*.c dictBuilder/*.c | wc -l)
note "zstd: $nobj objects, from $ZSTD"
sleep 1  # (files read must be older than the run that reads them)

# 1. Build misses.
export CACHECTL_DIR=$WORK/c1
hyperfine --runs 3 --warmup 1 --prepare 'make clean' --export-markdown "$R/build.md" \
  -n plain 'make -j2' \
  -n 'off (--force)' "make -j2 CC='$C run --force --trace off -- gcc'" \
  -n 'auto (--force)' "make -j2 CC='$C run --force --trace auto -- gcc'"
table build

# 2. find + cat.
mkdir -p "$WORK/files" && cd "$WORK/files"
for d in $(seq 1 100); do mkdir -p "files/d$d"; for f in $(seq 1 100); do echo "$d $f" >"files/d$d/f$f"; done; done
sleep 1
cmd="find files -type f | xargs cat > /dev/null"
hyperfine -N --runs 10 --warmup 2 --export-markdown "$R/findcat.md" \
  -n plain "sh -c '$cmd'" \
  -n 'off (--force)' "$C run --force --trace off -- sh -c '$cmd'" \
  -n 'auto (--force)' "$C run --force --trace auto -- sh -c '$cmd'"
table findcat

# 3. The zero-configuration build.
cd "$src"
make clean >/dev/null && make -j2 >/dev/null
mkdir -p "$WORK/plain-objs" && cp --parents $(find . -name '*.o') "$WORK/plain-objs/"
export CACHECTL_DIR=$WORK/c3
make clean >/dev/null && make -j2 CC="$C run --trace auto -- gcc" >/dev/null
same=0; differ=0
for o in $(cd "$WORK/plain-objs" && find . -name '*.o'); do
  if cmp -s "$WORK/plain-objs/$o" "$o"; then same=$((same + 1)); else differ=$((differ + 1)); fi
done
note "zero-config build: $same objects byte-identical to the plain build's, $differ differ"
make clean >/dev/null && make -j2 CC="ccache gcc" >/dev/null   # warm ccache
hyperfine --runs 5 --warmup 1 --prepare 'make clean' --export-markdown "$R/rebuild.md" \
  -n 'cachectl auto, warm' "make -j2 CC='$C run --trace auto -- gcc'" \
  -n 'ccache, warm' "make -j2 CC='ccache gcc'"
table rebuild
header=common/xxhash.h
includers=$(for c in common/*.c compress/*.c decompress/*.c dictBuilder/*.c; do
  if gcc -MM -I. -Icommon -DZSTD_DISABLE_ASM "$c" | tr ' \\' '\n\n' | grep -qE '(^|/)xxhash\.h$'; then echo "$c"; fi
done | wc -l)
# (After `make clean`: every compile goes through cachectl, which decides; this Makefile has
# no header dependencies for make to decide with.)
make clean >/dev/null
echo "/* touched */" >>"$header"
sleep 1
ran=$(make -j2 CC="$C run -v --trace auto -- gcc" 2>&1 >/dev/null | grep -c '^cachectl: miss' || true)
note "after editing $header: $ran compiles ran; $includers of the $nobj sources include it (gcc -MM)"

# 4. Hits.
export CACHECTL_DIR=$WORK/c4
f=compress/zstd_compress.c
gcc_args="-O2 -I. -Icommon -DZSTD_DISABLE_ASM -DXXH_NAMESPACE=ZSTD_ -c $f -o x.o"
$C run --trace auto -- gcc $gcc_args
$C run --trace off -o x.o -- gcc $gcc_args
ccache gcc $gcc_args && ccache gcc $gcc_args
hyperfine -N --runs 200 --warmup 10 --export-markdown "$R/compile-hit.md" \
  -n 'cachectl auto hit' "$C run --trace auto -- gcc $gcc_args" \
  -n 'cachectl off -o hit' "$C run --trace off -o x.o -- gcc $gcc_args" \
  -n 'ccache direct hit' "ccache gcc $gcc_args"
table compile-hit
headers=$(gcc -MM -I. -Icommon -DZSTD_DISABLE_ASM $f | tr ' \\' '\n\n' | grep -c '\.h$' || true)
note "the traced compile hit checks the observed inputs of one run of $f ($headers project headers by gcc -MM, with the compiler's own files)"
$C run --trace auto -- echo hello >/dev/null; $C run --trace off -- echo hello >/dev/null
hyperfine -N --runs 300 --warmup 20 --export-markdown "$R/echo.md" \
  -n plain 'echo hello' \
  -n 'auto hit' "$C run --trace auto -- echo hello" \
  -n 'off hit' "$C run --trace off -- echo hello"
table echo

{
  echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -r)), $($C --version), \`bench/trace.sh\`."
  echo
  cat "$R/notes.md"
  echo
  cat "$R/tables.md"
} >"$OUT"
echo "wrote $OUT" >&2
