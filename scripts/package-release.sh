#!/usr/bin/env bash
# Package two built binaries the way a release ships them (scripts/build-release.sh calls this;
# tests/action/run.sh packages debug binaries with it to test scripts/install.sh):
#
#   scripts/package-release.sh VERSION TARGET BIN_DIR OUTDIR
#
# writes OUTDIR/cachectl-VERSION-TARGET.tar.gz, holding a directory of that name with
# BIN_DIR/cachectl, BIN_DIR/cachectl-remote, README.md and any LICENSE* file, and
# OUTDIR/cachectl-VERSION-TARGET.tar.gz.sha256 (`sha256sum -c` format). The archive is
# reproducible: sorted names, owner 0, mtime SOURCE_DATE_EPOCH (default: the last commit's time),
# no gzip timestamp.
set -euo pipefail
(($# == 4)) || { sed -n '5p' "$0" | sed 's/^# *//' >&2; exit 2; }
VERSION=$1 TARGET=$2 BIN_DIR=$3 OUTDIR=$4
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=cachectl-$VERSION-$TARGET
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/cachectl-package.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/$NAME"
cp "$BIN_DIR/cachectl" "$BIN_DIR/cachectl-remote" "$STAGE/$NAME/"
chmod 755 "$STAGE/$NAME/cachectl" "$STAGE/$NAME/cachectl-remote"
for f in "$ROOT"/README.md "$ROOT"/LICENSE*; do
  if [ -f "$f" ]; then cp "$f" "$STAGE/$NAME/"; fi
done
mtime=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$OUTDIR"
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$NAME" |
  gzip -n -9 >"$OUTDIR/$NAME.tar.gz"
(cd "$OUTDIR" && sha256sum "$NAME.tar.gz" >"$NAME.tar.gz.sha256")
echo "package-release.sh: wrote $OUTDIR/$NAME.tar.gz ($(stat -c %s "$OUTDIR/$NAME.tar.gz") bytes)"
echo "package-release.sh: $(cat "$OUTDIR/$NAME.tar.gz.sha256")"
