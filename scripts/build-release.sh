#!/usr/bin/env bash
# Build the release binaries of cachectl and cachectl-remote for one Linux target as static PIEs
# (no dynamic loader, no glibc needed at run time, ASLR kept), check that they are, and package
# them. Used by .github/workflows/release.yml and by bench/run.sh ("cachectl (release binary)").
#
#   scripts/build-release.sh TARGET OUTDIR
#
#   TARGET   x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu (built natively: run it on a
#            machine of that architecture; a cross build works when
#            CARGO_TARGET_<TRIPLE>_LINKER names a cross gcc)
#   OUTDIR   receives cachectl-VERSION-TARGET.tar.gz (a directory of that name holding both
#            binaries, README.md and any LICENSE* file) and cachectl-VERSION-TARGET.tar.gz.sha256
#            (`sha256sum -c` format), written by scripts/package-release.sh
#
# The build is `cargo build --release --locked --target TARGET` with
# RUSTFLAGS="-C target-feature=+crt-static" (the explicit --target keeps the flag away from build
# scripts and proc-macros, which cannot be static), linked through scripts/static-pie-cc, which
# turns rustc's `-static -no-pie` into `-static-pie` on targets where rustc does not do it itself
# (aarch64). The binaries stay in $CARGO_TARGET_DIR (default target/)/TARGET/release. The script
# fails unless both are static-pie: ELF type DYN, no PT_INTERP, no DT_NEEDED, and `file` says
# "static-pie linked". When TARGET is the machine's own architecture, each binary must also run
# (`--version`).
set -euo pipefail

usage() { sed -n '5,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
(($# == 2)) || usage
TARGET=$1
OUTDIR=$2
case $TARGET in
*-linux-gnu | *-linux-musl) ;;
*) echo "build-release.sh: $TARGET: only Linux targets are built as static PIEs" >&2; exit 2 ;;
esac
for tool in cargo file readelf tar gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-release.sh: $tool is not installed" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VERSION=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$VERSION" ] || { echo "build-release.sh: no version in Cargo.toml's [package]" >&2; exit 1; }
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# The linker: scripts/static-pie-cc in front of whatever was configured for this target (cc).
triple_var=$(printf '%s' "$TARGET" | tr 'a-z.-' 'A-Z__')
linker_var=CARGO_TARGET_${triple_var}_LINKER
export STATIC_PIE_CC=${!linker_var:-cc}
export "$linker_var=$ROOT/scripts/static-pie-cc"
export RUSTFLAGS="-C target-feature=+crt-static"
unset CARGO_ENCODED_RUSTFLAGS CACHECTL_NO_PIE

echo "build-release.sh: cachectl $VERSION for $TARGET (RUSTFLAGS=\"$RUSTFLAGS\", linker $STATIC_PIE_CC via scripts/static-pie-cc, target dir $TARGET_DIR)"
cargo build --release --locked --target "$TARGET"

BIN_DIR=$TARGET_DIR/$TARGET/release
host_arch=$(uname -m)
fail=0
for bin in cachectl cachectl-remote; do
  path=$BIN_DIR/$bin
  [ -x "$path" ] || { echo "build-release.sh: no binary at $path" >&2; exit 1; }
  desc=$(file -b "$path")
  elf_type=$(readelf -h "$path" | awk '/^ *Type:/ { print $2 }')
  interp=$(readelf -l "$path" | grep -c 'Requesting program interpreter' || true)
  needed=$(readelf -d "$path" | grep -c '(NEEDED)' || true)
  echo "$bin: $desc"
  if [[ $desc != *"static-pie linked"* || $elf_type != DYN || $interp != 0 || $needed != 0 ]]; then
    echo "build-release.sh: $bin is not a static PIE (ELF type $elf_type, PT_INTERP $interp, DT_NEEDED $needed)" >&2
    fail=1
  fi
  if [ "${TARGET%%-*}" = "$host_arch" ]; then
    "$path" --version || { echo "build-release.sh: $bin does not run" >&2; fail=1; }
  fi
done
((fail == 0)) || exit 1

scripts/package-release.sh "$VERSION" "$TARGET" "$BIN_DIR" "$OUTDIR"
