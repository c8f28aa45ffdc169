#!/usr/bin/env bash
# Benchmark cachectl against the plain command, bkt and ccache, and write docs/benchmarks.md.
#
#   bench/run.sh                 everything (about 25-35 minutes on 2 cores)
#   BENCH_CASES="1 2" bench/run.sh   re-run some cases: their results are replaced, the others
#                                    kept, and the report is rewritten from all of them
#
# Cases: 1 hit latency (the build below, as `cargo install` makes it, and beside it the static-PIE
#          release binary that scripts/build-release.sh makes for the host),
#        2 compile wrapping, 3 input hashing, 4 large outputs, 5 scale,
#        6 hit-path profile (perf stat, strace, callgrind; skipped for a tool that is missing),
#        7 (opt-in, BENCH_CASES=7: not part of a full run) the same source built static and
#          non-PIE into $CARGO_TARGET_DIR/static-exp, its hits against the normal build's.
#
# Environment:
#   CARGO_TARGET_DIR   where the release build goes (default: the workspace's target/), and the
#                      static-PIE release binary (under <host triple>/release, for case 1)
#   BENCH_REV          build this git revision (e.g. HEAD) from a clean export under
#                      $CARGO_TARGET_DIR/bench-src instead of the working tree
#   BENCH_CASES        cases to run (default "1 2 3 4 5 6")
#   BENCH_ENTRIES      entries in the scale case (default 100000; falls back to 20000 when the
#                      first 10% shows that generation would take more than BENCH_GEN_BUDGET s)
#   BENCH_GEN_BUDGET   seconds allowed for generating the scale case (default 600)
#   BENCH_SMALL_FILES  files in the small-files hashing case (default 100000)
#   BENCH_BIG          size of the big file in cases 3 and 4, as `head -c` takes it (default 1G;
#                      smaller only to try the script out quickly)
#   BENCH_WORK         scratch directory (default: a new /tmp/cachectl-bench.XXXXXX, deleted at exit)
#   BENCH_KEEP=1       keep the scratch directory
#   BENCH_RESULTS      raw results (default bench/results: hyperfine JSON + markdown, logs)
#   BENCH_OUT          the report (default docs/benchmarks.md)
#
# Every comparison is one hyperfine invocation (commands side by side, -N unless a pipe needs a
# shell, warmups). Each tool gets a private cache directory under the scratch directory. A
# sampler records the load average, the run queue and foreign rustc processes during each
# invocation (and other sessions' running processes), because the machine is shared with other
# builds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
CASES=${BENCH_CASES:-"1 2 3 4 5 6"}
ENTRIES=${BENCH_ENTRIES:-100000}
GEN_BUDGET=${BENCH_GEN_BUDGET:-600}
SMALL_FILES=${BENCH_SMALL_FILES:-100000}
BIG=${BENCH_BIG:-1G}
RESULTS=${BENCH_RESULTS:-$BENCH/results}
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks.md}
INVOCATION="${BENCH_INVOCATION:-$0 $*}"
for v in CARGO_TARGET_DIR BENCH_REV BENCH_CASES BENCH_ENTRIES BENCH_GEN_BUDGET BENCH_SMALL_FILES BENCH_BIG BENCH_WORK BENCH_KEEP; do
    if [ -n "${!v:-}" ]; then INVOCATION="$v=${!v} $INVOCATION"; fi
done

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
has() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
apt_need=()
command -v hyperfine >/dev/null || apt_need+=(hyperfine)
command -v ccache >/dev/null || apt_need+=(ccache)
command -v gcc >/dev/null || apt_need+=(gcc)
command -v make >/dev/null || apt_need+=(make)
[ -x /usr/bin/time ] || apt_need+=(time)
command -v python3 >/dev/null || apt_need+=(python3)
command -v jq >/dev/null || apt_need+=(jq)
if has 6; then
    command -v valgrind >/dev/null || apt_need+=(valgrind)
    command -v strace >/dev/null || apt_need+=(strace)
fi
if [ ${#apt_need[@]} -gt 0 ]; then
    log "installing ${apt_need[*]} (apt-get)"
    $SUDO apt-get install -y "${apt_need[@]}" ||
        { $SUDO apt-get update && $SUDO apt-get install -y "${apt_need[@]}"; }
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v bkt >/dev/null; then
    log "installing bkt (cargo install bkt --locked)"
    cargo install bkt --locked
fi
if has 3 && ! command -v b3sum >/dev/null; then
    log "installing b3sum (cargo install b3sum --locked)"
    cargo install b3sum --locked
fi

# ---------------------------------------------------------------------------------------------
# Scratch space
# ---------------------------------------------------------------------------------------------
WORK=${BENCH_WORK:-$(mktemp -d /tmp/cachectl-bench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
MON_PID=
cleanup() {
    [ -n "$MON_PID" ] && kill "$MON_PID" 2>/dev/null
    if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Build: the working tree, or with BENCH_REV a clean export of that revision (so that edits in
# progress in the working tree neither break nor leak into the measured binary).
# ---------------------------------------------------------------------------------------------
cd "$ROOT"
SRC=$ROOT
if [ -n "${BENCH_REV:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$ROOT/$CARGO_TARGET_DIR ;; esac
    SRC=$CARGO_TARGET_DIR/bench-src
    REV_HASH=$(git rev-parse --short "$BENCH_REV^{commit}") # fixed now: HEAD may move meanwhile
    log "exporting $BENCH_REV ($REV_HASH) to $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git archive --format=tar "$REV_HASH" | tar -x -C "$SRC"
fi
cd "$SRC"
log "building cachectl (cargo build --release --workspace) in $SRC"
build_start=$(date +%s)
cargo build --release --workspace
build_secs=$(( $(date +%s) - build_start ))
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
CACHECTL=$TARGET_DIR/release/cachectl
[ -x "$CACHECTL" ] || { echo "no binary at $CACHECTL" >&2; exit 1; }
# Case 1 also measures the release binary: the static PIE scripts/build-release.sh makes (the
# one .github/workflows/release.yml publishes), built from the same source into the same target
# directory. A revision older than that script has none, and its row is left out.
RELEASE=
if has 1; then
    HOST=$(rustc -vV | sed -n 's/^host: //p')
    if [ -x "$SRC/scripts/build-release.sh" ]; then
        log "building the release binary (scripts/build-release.sh $HOST)"
        release_start=$(date +%s)
        CARGO_TARGET_DIR=$TARGET_DIR "$SRC/scripts/build-release.sh" "$HOST" "$TARGET_DIR/release-dist" >&2
        release_secs=$(( $(date +%s) - release_start ))
        RELEASE=$TARGET_DIR/$HOST/release/cachectl
    else
        log "no scripts/build-release.sh in $SRC: case 1 has no release-binary row"
    fi
fi
cd "$ROOT"
if [ -n "${BENCH_REV:-}" ]; then
    BUILT="revision $BENCH_REV = $REV_HASH (clean export)"
else
    BUILT="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src remote Cargo.toml Cargo.lock || echo ', with uncommitted changes in src/remote/Cargo')"
fi
mkdir -p "$RESULTS"
# A full run starts the results afresh. A partial run (BENCH_CASES) replaces only its cases'
# files and appends to meta.tsv, so that a noisy case can be re-run on its own later.
FULL=1
for c in 1 2 3 4 5 6; do has $c || FULL=0; done
if [ $FULL = 1 ]; then
    rm -f "$RESULTS"/*.json "$RESULTS"/*.md "$RESULTS"/*.load "$RESULTS"/*.cmd "$RESULTS"/*.txt \
        "$RESULTS"/*.tsv "$RESULTS"/*.log
else
    for c in $CASES; do
        case $c in
        1) pat="hit_*" ;; 2) pat="compile_one.* make_*" ;; 3) pat="hash_*" ;;
        4) pat="large_output.* rss_*" ;; 5) pat="scale_*" ;; 6) pat="prof_* strace_* perf_* callgrind_*" ;;
        7) pat="static_*" ;;
        esac
        for p in $pat; do rm -f "$RESULTS"/$p; done
    done
fi

# Nothing from the user's environment or config may change what is measured.
for v in $(env | sed -n 's/^\(CACHECTL_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset BKT_CACHE_DIR CCACHE_DIR CCACHE_CONFIGPATH
export XDG_CONFIG_HOME=$WORK/xdg-config
mkdir -p "$XDG_CONFIG_HOME"
export CCACHE_CONFIGPATH=$WORK/ccache.conf
: > "$CCACHE_CONFIGPATH"
export CCACHE_DIRECT=1 LC_ALL=C

# meta.tsv: key<TAB>value lines the report reads (a later line for the same key wins).
META=$RESULTS/meta.tsv
meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }
if [ $FULL = 1 ]; then
    : > "$META"
    meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    meta invocation "$INVOCATION"
    meta nproc "$(nproc)"
    meta cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    meta mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    meta kernel "$(uname -sr)"
    meta fs "$(df -T "$WORK" | awk 'NR==2 {print $2 " (" $1 ")"}')"
    meta rustc "$(rustc --version)"
    meta cachectl "$("$CACHECTL" --version), built from the $BUILT"
    meta cachectl_bin "$CACHECTL ($(stat -c %s "$CACHECTL") bytes)"
    meta build_secs "$build_secs"
    if [ -n "$RELEASE" ]; then
        meta cachectl_release_bin "$RELEASE ($(file -b "$RELEASE" | cut -d, -f1-2), $(stat -c %s "$RELEASE") bytes), built by scripts/build-release.sh in ${release_secs}s"
    fi
    meta hyperfine "$(hyperfine --version)"
    meta bkt "$(bkt --version 2>&1 | head -1)"
    meta ccache "$(ccache --version | head -1)"
    meta gcc "$(gcc --version | head -1)"
    meta make "$(make --version | head -1)"
    command -v b3sum >/dev/null && meta b3sum "$(b3sum --version)"
    meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
else
    meta partial "case(s) $CASES re-run $(date -u +%Y-%m-%dT%H:%M:%SZ) with \`$INVOCATION\`, cachectl built from the $BUILT, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
fi
[ $FULL = 1 ] && { top -b -n 1 -w 200 | head -20 > "$RESULTS/top-start.txt" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# One hyperfine invocation, with a load sampler around it.
#   hf NAME [hyperfine options and commands...]
# ---------------------------------------------------------------------------------------------
# Each second: time, 1-min load average, runnable tasks (kernel's count), rustc processes, and
# running processes outside this script's session (other people's work).
MY_SID=$(ps -o sid= -p $$ | tr -d ' ')
mon_start() {
    local out=$1
    (
        while :; do
            read -r l1 _ _ rq _ < /proc/loadavg
            foreign=$(ps -eo stat=,sid= | awk -v s="$MY_SID" '$1 ~ /^R/ && $2 != s && $2 != 0' | wc -l)
            printf '%s %s %s %s %s\n' "$(date +%s)" "$l1" "${rq%/*}" "$(pgrep -c -x rustc || true)" "$foreign"
            sleep 1
        done
    ) > "$out" &
    MON_PID=$!
}
mon_stop() {
    kill "$MON_PID" 2>/dev/null || true
    wait "$MON_PID" 2>/dev/null || true
    MON_PID=
}
hf() {
    local name=$1
    shift
    log "hyperfine: $name"
    printf '%q ' hyperfine "$@" > "$RESULTS/$name.cmd"
    mon_start "$RESULTS/$name.load"
    hyperfine --style basic --time-unit millisecond \
        --export-json "$RESULTS/$name.json" --export-markdown "$RESULTS/$name.md" "$@" \
        2>&1 | tee "$RESULTS/$name.txt" >&2
    mon_stop
}

# Print "hit" or "miss" for `cachectl run ARGS...` (run from the current directory).
cc_verdict() {
    local err
    err=$("$CACHECTL" run -v "$@" 2>&1 >/dev/null) || true
    case $err in "cachectl: hit"* | *$'\n'"cachectl: hit"*) echo hit ;; *) echo miss ;; esac
}
expect_hit() {
    local v
    v=$(cc_verdict "$@")
    [ "$v" = hit ] || { echo "expected a cachectl hit for: $*" >&2; exit 1; }
}

# ---------------------------------------------------------------------------------------------
# 1. Hit latency
# ---------------------------------------------------------------------------------------------
if has 1; then
    log "case 1: hit latency"
    D=$WORK/hit
    mkdir -p "$D"
    cd "$D"
    head -c 13M /dev/urandom | base64 -w 76 > data.b64 # 17.6 MB of base64 text
    export CACHECTL_DIR=$D/cachectl-cache
    BKT="bkt --ttl=1h --cache-dir=$D/bkt-cache"
    for size in hello 65536 1048576 16777216; do
        if [ $size = hello ]; then
            plain="echo hello"
            label="echo hello"
        else
            plain="head -c $size $D/data.b64"
            label="head -c $size"
        fi
        # Prime both caches (twice: the second call must be a hit) and check.
        for _ in 1 2; do
            $BKT -- $plain > /dev/null
            "$CACHECTL" run -- $plain > /dev/null
        done
        expect_hit -- $plain
        # The release binary hits the same entries (same source, same cache directory). Its row
        # comes last, so that the report's targets keep reading the first `cachectl` row.
        release_row=()
        if [ -n "$RELEASE" ]; then
            v=$("$RELEASE" run -v -- $plain 2>&1 >/dev/null) || true
            [[ $v == *"cachectl: hit"* ]] ||
                { echo "expected a hit from the release binary for: $plain" >&2; exit 1; }
            release_row=(-n "cachectl (release binary)" "$RELEASE run -- $plain")
        fi
        runs=(--warmup 20 --min-runs 200)
        [ $size = 16777216 ] && runs=(--warmup 5 --min-runs 60)
        hf "hit_$size" -N "${runs[@]}" \
            -n "plain: $label" "$plain" \
            -n "bkt hit" "$BKT -- $plain" \
            -n "cachectl hit" "$CACHECTL run -- $plain" \
            "${release_row[@]}"
    done
    # Same, with every byte of 1 MiB going through a pipe to a reader (not /dev/null). Every
    # row pays the same sh + cat start-up, so -N (no shell correction) and compare differences.
    hf hit_1048576_pipe -N --warmup 10 --min-runs 100 \
        -n "sh -c 'plain | cat'" "sh -c 'head -c 1048576 $D/data.b64 | cat > /dev/null'" \
        -n "sh -c 'bkt hit | cat'" "sh -c '$BKT -- head -c 1048576 $D/data.b64 | cat > /dev/null'" \
        -n "sh -c 'cachectl hit | cat'" "sh -c '$CACHECTL run -- head -c 1048576 $D/data.b64 | cat > /dev/null'"
    meta journal_after_case1 "$(stat -c %s "$CACHECTL_DIR/journal-v1.log")"
    unset CACHECTL_DIR
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 2. Compile wrapping
# ---------------------------------------------------------------------------------------------
if has 2; then
    log "case 2: compile wrapping"
    D=$WORK/cc
    python3 "$BENCH/gen.py" one "$D/one"
    python3 "$BENCH/gen.py" proj "$D/proj" 50
    meta c_one_lines "$(cat "$D"/one/a.c | wc -l) lines in a.c, headers: $(cd "$D/one" && wc -l ./*.h | awk '$2 != "total" {printf "%s%s (%s)", sep, $2, $1; sep=", "}')"
    meta c_proj "$(ls "$D"/proj/src/*.c | wc -l) .c files of ~$(wc -l < "$D/proj/src/mod00.c") lines, $(ls "$D"/proj/include/*.h | wc -l) headers, gcc -O2, make -j2"
    export CCACHE_DIR=$D/ccache-cache CACHECTL_DIR=$D/cachectl-cache
    sleep 2.5 # older than ccache's "too new" and cachectl's racy window
    cd "$D/one"
    CCW="cachectl run -i a.c -i '*.h' -o a.o -- gcc -c a.c -o a.o"
    for _ in 1 2; do
        ccache gcc -c a.c -o a.o
        "$CACHECTL" run -i a.c -i '*.h' -o a.o -- gcc -c a.c -o a.o
    done
    expect_hit -i a.c -i '*.h' -o a.o -- gcc -c a.c -o a.o
    ccache -z > /dev/null
    ccache gcc -c a.c -o a.o
    stats=$(ccache --print-stats)
    grep -q '^direct_cache_hit[[:space:]]1$' <<< "$stats" ||
        { echo "ccache did not hit in direct mode" >&2; echo "$stats" >&2; exit 1; }
    # The first two hits find a.o in place (as a rebuild of an unchanged target does); the
    # last two delete it first (as after `make clean`), so each must write it.
    hf compile_one -N --warmup 20 --min-runs 200 \
        --prepare true --prepare true --prepare true \
        --prepare "rm -f a.o" --prepare "rm -f a.o" \
        -n "gcc -c" "gcc -c a.c -o a.o" \
        -n "ccache gcc -c (direct hit)" "ccache gcc -c a.c -o a.o" \
        -n "cachectl run ... gcc -c (hit)" "$CACHECTL ${CCW#cachectl }" \
        -n "ccache gcc -c (direct hit, a.o deleted first)" "ccache gcc -c a.c -o a.o" \
        -n "cachectl run ... gcc -c (hit, a.o deleted first)" "$CACHECTL ${CCW#cachectl }"
    meta ccache_stats_one "$(ccache --print-stats | awk '$1 ~ /direct_cache_hit|preprocessed_cache_hit|cache_miss/ {printf "%s=%s ", $1, $2}')"

    cd "$D/proj"
    M="make -s -j2 CACHECTL=$CACHECTL"
    hf make_cold -N --warmup 1 --runs 5 \
        --prepare "make -s clean" \
        --prepare "sh -c 'make -s clean; rm -rf $CCACHE_DIR'" \
        --prepare "sh -c 'make -s clean; rm -rf $CACHECTL_DIR'" \
        -n "make -j2 (gcc)" "$M MODE=plain" \
        -n "make -j2 (ccache, cold)" "$M MODE=ccache" \
        -n "make -j2 (cachectl, cold)" "$M MODE=cachectl"
    # Prime both caches, then every timed run starts from `make clean`.
    make -s clean; $M MODE=ccache; make -s clean; $M MODE=cachectl; make -s clean
    ccache -z > /dev/null
    hf make_warm -N --warmup 1 --runs 10 \
        --prepare "make -s clean" \
        -n "make -j2 (gcc)" "$M MODE=plain" \
        -n "make -j2 (ccache, warm)" "$M MODE=ccache" \
        -n "make -j2 (cachectl, warm)" "$M MODE=cachectl"
    meta ccache_stats_warm "$(ccache --print-stats | awk '$1 ~ /direct_cache_hit|preprocessed_cache_hit|cache_miss/ {printf "%s=%s ", $1, $2}')"
    unset CCACHE_DIR CACHECTL_DIR
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 3. Input hashing
# ---------------------------------------------------------------------------------------------
if has 3; then
    log "case 3: input hashing (generating 1 GiB and $SMALL_FILES small files)"
    D=$WORK/hash
    mkdir -p "$D/small"
    cd "$D"
    head -c "$BIG" /dev/urandom > big.bin
    meta big_bytes "$(stat -c %s big.bin)"
    # $SMALL_FILES files of 1 KiB in directories of 1000.
    dirs=$(( (SMALL_FILES + 999) / 1000 ))
    for ((i = 0; i < dirs; i++)); do
        n=$(( SMALL_FILES - i * 1000 )); (( n > 1000 )) && n=1000
        mkdir -p "small/d$i"
        head -c $(( n * 1024 )) /dev/urandom | split -b 1024 -a 3 -d - "small/d$i/f"
    done
    meta small_files "$(find small -type f | wc -l) files of 1 KiB in $dirs directories ($(du -sh small | cut -f1) on disk)"
    sleep 2.5
    # Fresh caches for "cold", primed caches for "warm" (stat cache filled, entry stored).
    "$CACHECTL" run --dir "$D/warm-big" -i big.bin -- true
    "$CACHECTL" run --dir "$D/warm-small" -i small -- true
    (cd "$D" && expect_hit --dir "$D/warm-big" -i big.bin -- true)
    (cd "$D" && expect_hit --dir "$D/warm-small" -i small -- true)
    meta record_bytes_small "$(find "$D/warm-small/ac-v1" -type f -printf '%s\n' | sort -n | tail -1)"
    meta statcache_bytes_small "$(find "$D/warm-small/stat-v1" -type f -printf '%s\n' | sort -n | tail -1)"
    hf hash_big -N --warmup 1 --runs 8 \
        --prepare "true" \
        --prepare "rm -rf $D/cold" \
        --prepare "rm -rf $D/cold" \
        --prepare "true" \
        -n "b3sum big.bin" "b3sum big.bin" \
        -n "cachectl cold key, --no-store" "$CACHECTL run --dir $D/cold --no-store -i big.bin -- true" \
        -n "cachectl cold key + store" "$CACHECTL run --dir $D/cold -i big.bin -- true" \
        -n "cachectl warm (stat cache) hit" "$CACHECTL run --dir $D/warm-big -i big.bin -- true"
    hf hash_small -N --warmup 1 --runs 8 \
        --prepare "true" \
        --prepare "rm -rf $D/cold" \
        --prepare "rm -rf $D/cold" \
        --prepare "true" \
        -n "find | xargs b3sum" "sh -c 'find small -type f -print0 | xargs -0 b3sum > /dev/null'" \
        -n "cachectl cold key, --no-store" "$CACHECTL run --dir $D/cold --no-store -i small -- true" \
        -n "cachectl cold key + store" "$CACHECTL run --dir $D/cold -i small -- true" \
        -n "cachectl warm (stat cache) hit" "$CACHECTL run --dir $D/warm-small -i small -- true"
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 4. Large outputs
# ---------------------------------------------------------------------------------------------
if has 4; then
    log "case 4: large outputs ($BIG)"
    D=$WORK/large
    mkdir -p "$D"
    cd "$D"
    GEN="sh -c 'head -c $BIG /dev/urandom > big.bin'"
    # RSS first (one run each, /usr/bin/time -v): a miss that stores, then a hit that restores.
    /usr/bin/time -v -o "$RESULTS/rss_miss.txt" "$CACHECTL" run --dir "$D/c-rss" -o big.bin -- sh -c "head -c $BIG /dev/urandom > big.bin"
    rm -f big.bin
    /usr/bin/time -v -o "$RESULTS/rss_hit.txt" "$CACHECTL" run --dir "$D/c-rss" -o big.bin -- sh -c "head -c $BIG /dev/urandom > big.bin"
    [ -s big.bin ] || { echo "the hit did not restore big.bin" >&2; exit 1; }
    meta rss_miss_kb "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$RESULTS/rss_miss.txt")"
    meta rss_hit_kb "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$RESULTS/rss_hit.txt")"
    meta big_output_bytes "$(stat -c %s big.bin)"
    meta blob_bytes_1g "$(find "$D/c-rss/cas-v1" -type f -printf '%s\n' | sort -n | tail -1)"
    cp big.bin ref.bin
    rm -rf "$D/c-rss"
    "$CACHECTL" run --dir "$D/c-hit" -o big.bin -- sh -c "head -c $BIG /dev/urandom > big.bin"
    sync
    hf large_output -N --warmup 1 --runs 5 \
        --prepare "rm -f big.bin" \
        --prepare "sh -c 'rm -rf $D/c-miss big.bin'" \
        --prepare "rm -f big.bin" \
        --prepare "rm -f big.bin" \
        -n "plain: head -c $BIG /dev/urandom > big.bin" "$GEN" \
        -n "cachectl miss (run + store)" "$CACHECTL run --dir $D/c-miss -o big.bin -- $GEN" \
        -n "cp ref.bin big.bin (restore reference)" "cp ref.bin big.bin" \
        -n "cachectl hit (restore)" "$CACHECTL run --dir $D/c-hit -o big.bin -- $GEN"
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 5. Scale
# ---------------------------------------------------------------------------------------------
if has 5; then
    log "case 5: scale ($ENTRIES entries)"
    D=$WORK/scale
    mkdir -p "$D/work"
    cd "$D/work"
    export CACHECTL_DIR=$D/big
    # Each entry is one real `cachectl run -- echo N` (a miss that stores), 4 at a time.
    gen() { seq "$1" "$2" | xargs -P 4 -n 1 "$CACHECTL" run -- echo > /dev/null; }
    t0=$(date +%s.%N)
    first=$(( ENTRIES / 10 ))
    gen 1 "$first"
    t1=$(date +%s.%N)
    projected=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", (b - a) * 10}')
    if (( projected > GEN_BUDGET && ENTRIES > 20000 )); then
        log "projected generation time ${projected}s is over ${GEN_BUDGET}s: using 20000 entries"
        meta scale_fallback "projected ${projected} s for $ENTRIES entries (budget $GEN_BUDGET s): used 20000"
        ENTRIES=20000
    fi
    (( ENTRIES > first )) && gen $(( first + 1 )) "$ENTRIES"
    t2=$(date +%s.%N)
    meta scale_entries "$ENTRIES"
    meta scale_gen_secs "$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.1f", b - a}')"
    meta scale_journal_bytes "$(stat -c %s "$CACHECTL_DIR/journal-v1.log")"
    # The first management command folds the journal of every store into the index.
    t3=$(date +%s.%N)
    "$CACHECTL" stats > "$RESULTS/scale_first_stats.txt"
    t4=$(date +%s.%N)
    meta scale_first_stats_secs "$(awk -v a="$t3" -v b="$t4" 'BEGIN {printf "%.2f", b - a}')"
    meta scale_disk "$(du -sh "$CACHECTL_DIR" | cut -f1)"
    meta scale_index_bytes "$(stat -c %s "$CACHECTL_DIR/index-v1.sqlite")"
    meta scale_ac_records "$(find "$CACHECTL_DIR/ac-v1" -type f | wc -l)"
    hf scale_mgmt -N --warmup 1 --min-runs 5 \
        -n "stats" "$CACHECTL stats" \
        -n "ls | head" "sh -c '$CACHECTL ls | head'" \
        -n "gc --dry-run" "$CACHECTL gc --dry-run" \
        -n "gc --dry-run --max-size 1MiB (evicts all)" "$CACHECTL gc --dry-run --max-size 1MiB" \
        -n "invalidate --dry-run 'nomatch*'" "$CACHECTL invalidate --dry-run 'nomatch*'"
    # A hit on the big cache against a hit on a cache holding just that entry.
    E=$D/empty
    for _ in 1 2; do
        "$CACHECTL" run --dir "$D/big" -- echo hello > /dev/null
        "$CACHECTL" run --dir "$E" -- echo hello > /dev/null
    done
    expect_hit --dir "$D/big" -- echo hello
    expect_hit --dir "$E" -- echo hello
    "$CACHECTL" stats > /dev/null # fold again: no background gc --auto during the timing
    hf scale_hit -N --warmup 20 --min-runs 300 \
        -n "hit, cache with 1 entry" "$CACHECTL run --dir $E -- echo hello" \
        -n "hit, cache with $ENTRIES entries" "$CACHECTL run --dir $D/big -- echo hello"
    unset CACHECTL_DIR
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 6. Hit-path profile: where the time of a small hit goes
# ---------------------------------------------------------------------------------------------
if has 6; then
    log "case 6: hit-path profile"
    D=$WORK/prof
    mkdir -p "$D"
    cd "$D"
    export CACHECTL_DIR=$D/cache
    head -c 800K /dev/urandom | base64 -w 76 > b64.txt
    head -c 1048576 b64.txt > mib.txt # 1 MiB of base64 text (no SIGPIPE under pipefail)
    for _ in 1 2; do
        "$CACHECTL" run -- echo hello > /dev/null
        "$CACHECTL" run -- cat mib.txt > /dev/null
        CACHECTL_EXE_CHECK=none "$CACHECTL" run -- echo hello > /dev/null
    done
    expect_hit -- echo hello
    # Decomposition: process start + argument parsing alone, then the hit with and without
    # the executable check (exe_check=none skips the stat cache of /usr/bin/echo). Both
    # exe_check variants go through env(1), so their difference is the check alone.
    hf prof_decompose -N --warmup 20 --min-runs 300 \
        -n "echo hello" "echo hello" \
        -n "cachectl --version (start + clap)" "$CACHECTL --version" \
        -n "cachectl hit" "$CACHECTL run -- echo hello" \
        -n "env exe_check=content cachectl hit" "env CACHECTL_EXE_CHECK=content $CACHECTL run -- echo hello" \
        -n "env exe_check=none cachectl hit" "env CACHECTL_EXE_CHECK=none $CACHECTL run -- echo hello"
    if command -v strace >/dev/null; then
        strace -f -c -o "$RESULTS/strace_hit_hello.txt" "$CACHECTL" run -- echo hello > /dev/null
        strace -f -o "$RESULTS/strace_hit_hello.log" -tt -T "$CACHECTL" run -- echo hello > /dev/null
        strace -f -c -o "$RESULTS/strace_hit_1m.txt" "$CACHECTL" run -- cat mib.txt > /dev/null
        strace -f -c -o "$RESULTS/strace_echo.txt" echo hello > /dev/null
    fi
    if command -v perf >/dev/null; then
        perf stat -r 200 -o "$RESULTS/perf_hit_hello.txt" "$CACHECTL" run -- echo hello > /dev/null 2>&1 || true
        perf stat -r 200 -o "$RESULTS/perf_echo.txt" echo hello > /dev/null 2>&1 || true
        perf stat -r 100 -o "$RESULTS/perf_hit_1m.txt" "$CACHECTL" run -- cat mib.txt > /dev/null 2>&1 || true
        perf stat -r 100 -o "$RESULTS/perf_cat_1m.txt" cat mib.txt > /dev/null 2>&1 || true
    fi
    if command -v valgrind >/dev/null; then
        valgrind --tool=callgrind --callgrind-out-file="$RESULTS/callgrind_hit_hello.out" \
            "$CACHECTL" run -- echo hello > /dev/null 2> "$RESULTS/callgrind_hit_hello.log" || true
        valgrind --tool=callgrind --callgrind-out-file="$RESULTS/callgrind_hit_1m.out" \
            "$CACHECTL" run -- cat mib.txt > /dev/null 2> "$RESULTS/callgrind_hit_1m.log" || true
        for p in hit_hello hit_1m; do
            callgrind_annotate --inclusive=yes "$RESULTS/callgrind_$p.out" 2>/dev/null |
                head -60 > "$RESULTS/callgrind_${p}_inclusive.txt" || true
            callgrind_annotate "$RESULTS/callgrind_$p.out" 2>/dev/null |
                head -45 > "$RESULTS/callgrind_${p}_self.txt" || true
            rm -f "$RESULTS/callgrind_$p.out"
        done
    fi
    unset CACHECTL_DIR
    cd "$ROOT"
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# 7. (opt-in: BENCH_CASES=7) Experiment: the same source linked statically, non-PIE
# ---------------------------------------------------------------------------------------------
if has 7; then
    log "case 7: static, non-PIE build of the same source (experiment)"
    STATIC_TARGET=${BENCH_STATIC_TARGET_DIR:-$TARGET_DIR/static-exp}
    STATIC_FLAGS="-C target-feature=+crt-static -C relocation-model=static"
    HOST=$(rustc -vV | sed -n 's/^host: //p')
    (cd "$SRC" && RUSTFLAGS="$STATIC_FLAGS" CARGO_TARGET_DIR=$STATIC_TARGET \
        cargo build --release -p cachectl --bin cachectl --target "$HOST")
    STATIC=$STATIC_TARGET/$HOST/release/cachectl
    meta static_flags "RUSTFLAGS=\"$STATIC_FLAGS\" cargo build --release -p cachectl --bin cachectl --target $HOST"
    meta static_bin "$(file -b "$STATIC" | cut -d, -f1-2) ($(stat -c %s "$STATIC") bytes), against $(file -b "$CACHECTL" | cut -d, -f1-2) ($(stat -c %s "$CACHECTL") bytes)"
    D=$WORK/static
    mkdir -p "$D"
    cd "$D"
    export CACHECTL_DIR=$D/cache
    head -c 800K /dev/urandom | base64 -w 76 > b64.txt
    head -c 1048576 b64.txt > mib.txt
    BKT="bkt --ttl=1h --cache-dir=$D/bkt-cache"
    for _ in 1 2; do
        for c in "echo hello" "head -c 1048576 $D/mib.txt"; do
            $BKT -- $c > /dev/null
            "$CACHECTL" run -- $c > /dev/null
            "$STATIC" run -- $c > /dev/null
        done
    done
    expect_hit -- echo hello
    hf static_hello -N --warmup 30 --min-runs 300 \
        -n "echo hello" "echo hello" \
        -n "bkt hit" "$BKT -- echo hello" \
        -n "cachectl --version (as built)" "$CACHECTL --version" \
        -n "cachectl --version (static)" "$STATIC --version" \
        -n "cachectl hit (as built)" "$CACHECTL run -- echo hello" \
        -n "cachectl hit (static)" "$STATIC run -- echo hello"
    hf static_1m -N --warmup 20 --min-runs 200 \
        -n "plain: head -c 1048576" "head -c 1048576 $D/mib.txt" \
        -n "bkt hit" "$BKT -- head -c 1048576 $D/mib.txt" \
        -n "cachectl hit (as built)" "$CACHECTL run -- head -c 1048576 $D/mib.txt" \
        -n "cachectl hit (static)" "$STATIC run -- head -c 1048576 $D/mib.txt"
    if command -v perf >/dev/null; then
        perf stat -r 200 -o "$RESULTS/static_perf_dyn.txt" "$CACHECTL" run -- echo hello > /dev/null 2>&1 || true
        perf stat -r 200 -o "$RESULTS/static_perf_static.txt" "$STATIC" run -- echo hello > /dev/null 2>&1 || true
    fi
    unset CACHECTL_DIR
    cd "$ROOT"
    rm -rf "$D"
fi

if [ $FULL = 1 ]; then
    meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    meta finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
log "writing $OUT"
python3 "$BENCH/report.py" "$RESULTS" "$OUT"
log "done: $OUT"
