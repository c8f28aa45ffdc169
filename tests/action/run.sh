#!/usr/bin/env bash
# A real test of scripts/install.sh and of the GitHub Action's own steps (action.yml,
# save/action.yml), outside GitHub: release-shaped archives of the given binaries
# (scripts/package-release.sh) are served the way GitHub serves release files, from a loopback
# HTTP server on a free port, and installed from there.
#
#   tests/action/run.sh [CACHECTL [CACHECTL_REMOTE]]
#
# The binaries default to target/debug/cachectl and target/debug/cachectl-remote (under
# CARGO_TARGET_DIR if set); .ci/run passes them after `cargo test` has built them. Needs bash,
# python3 (http.server; yaml or ruamel.yaml to read the action files), curl, tar, sha256sum. A missing tool or
# binary fails the test: it never skips.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CACHECTL=$(realpath "${1:-$TARGET_DIR/debug/cachectl}")
REMOTE=$(realpath "${2:-$TARGET_DIR/debug/cachectl-remote}")

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; failures=$((failures + 1)); }
for tool in python3 curl tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "tests/action: $tool is not installed" >&2; exit 1; }
done
python3 -c 'import yaml' 2>/dev/null || python3 -c 'import ruamel.yaml' 2>/dev/null ||
  { echo "tests/action: python3 has no yaml module (pip install pyyaml; check-jsonschema brings ruamel.yaml)" >&2; exit 1; }
for bin in "$CACHECTL" "$REMOTE"; do
  [ -x "$bin" ] || { echo "tests/action: no binary at $bin (build it first: cargo build)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/cachectl-action-test.XXXXXX)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
# Nothing from the caller's environment may steer cachectl or the install.
for v in $(compgen -e); do case $v in CACHECTL_* | GITHUB_* | RUNNER_*) unset "$v" ;; esac; done
export HOME=$W/home XDG_CONFIG_HOME=$W/home/config XDG_CACHE_HOME=$W/home/cache
mkdir -p "$HOME"

VERSION=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' "$ROOT/Cargo.toml")
case $(uname -m) in
x86_64) TARGET=x86_64-unknown-linux-gnu ;;
aarch64) TARGET=aarch64-unknown-linux-gnu ;;
*) echo "tests/action: no release target for $(uname -m)" >&2; exit 1 ;;
esac
ASSET=cachectl-$VERSION-$TARGET.tar.gz

# The server's tree, laid out as GitHub serves releases of OWNER/cachectl:
#   OWNER/cachectl/releases/download/vX/FILE and .../releases/latest/download/cachectl-version.txt
SRV=$W/srv
REL=$SRV/OWNER/cachectl/releases
mkdir -p "$W/bin" "$REL/latest/download"
cp "$CACHECTL" "$W/bin/cachectl"
cp "$REMOTE" "$W/bin/cachectl-remote"
# Debug builds carry hundreds of MB of debug info; the archives need none of it.
if command -v strip >/dev/null; then strip --strip-debug "$W/bin/cachectl" "$W/bin/cachectl-remote"; fi
"$ROOT/scripts/package-release.sh" "$VERSION" "$TARGET" "$W/bin" "$REL/download/v$VERSION" >/dev/null
echo "$VERSION" >"$REL/latest/download/cachectl-version.txt"
# A tampered release: the archive changed after its checksum was published.
mkdir -p "$REL/download/v9.9.8"
cp "$REL/download/v$VERSION/$ASSET" "$REL/download/v9.9.8/cachectl-9.9.8-$TARGET.tar.gz"
printf 'tampered' >>"$REL/download/v9.9.8/cachectl-9.9.8-$TARGET.tar.gz"
sed "s/$ASSET/cachectl-9.9.8-$TARGET.tar.gz/" "$REL/download/v$VERSION/$ASSET.sha256" \
  >"$REL/download/v9.9.8/cachectl-9.9.8-$TARGET.tar.gz.sha256"
# A release without its checksum file.
mkdir -p "$REL/download/v9.9.6"
cp "$REL/download/v$VERSION/$ASSET" "$REL/download/v9.9.6/cachectl-9.9.6-$TARGET.tar.gz"

# Serve it on a free loopback port: port 0, and read the port the server reports.
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$SRV" >"$W/server.out" 2>"$W/server.log" &
SERVER_PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(sed -n 's/^Serving HTTP on [^ ]* port \([0-9]*\).*/\1/p' "$W/server.out")
  [ -n "$PORT" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "tests/action: the HTTP server did not start" >&2; cat "$W/server.log" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT/OWNER/cachectl/releases
echo "serving $ASSET (cachectl $VERSION, $TARGET) at $BASE"

# install DIR [VAR=VALUE...]: run scripts/install.sh into DIR; stdout+stderr in $W/out, status in $rc.
run_install() {
  local dir=$1
  shift
  rc=0
  env CACHECTL_RELEASE_URL="$BASE" CACHECTL_INSTALL_DIR="$dir" "$@" \
    bash "$ROOT/scripts/install.sh" >"$W/out" 2>&1 || rc=$?
}
# expect_failure NAME DIR MESSAGE: install.sh failed, said MESSAGE, and DIR was not created.
expect_failure() {
  local name=$1 dir=$2 message=$3
  if [ "$rc" = 0 ]; then
    fail "$name: install.sh succeeded"
  elif ! grep -qF -- "$message" "$W/out"; then
    fail "$name: the error does not say '$message':"
    sed 's/^/     /' "$W/out" >&2
  elif [ -e "$dir" ]; then
    fail "$name: $dir was created: $(ls -A "$dir" | tr '\n' ' ')"
  else
    pass "$name: fails ($(grep -m1 'error:' "$W/out" | cut -c1-150)), installs nothing"
  fi
}
# check_installed NAME DIR: both binaries there, identical to the packaged ones, and working.
check_installed() {
  local name=$1 dir=$2 ok=1 want got
  if [ "$rc" != 0 ]; then
    fail "$name: install.sh exited $rc:"
    sed 's/^/     /' "$W/out" >&2
    return
  fi
  for bin in cachectl cachectl-remote; do
    cmp -s "$dir/$bin" "$W/bin/$bin" || { fail "$name: $dir/$bin differs from the packaged binary"; ok=0; }
    [ -x "$dir/$bin" ] || { fail "$name: $dir/$bin is not executable"; ok=0; }
  done
  want=$("$CACHECTL" --version)
  got=$("$dir/cachectl" --version 2>&1) || true
  [ "$got" = "$want" ] || { fail "$name: $dir/cachectl --version says '$got', expected '$want'"; ok=0; }
  "$dir/cachectl-remote" --version >/dev/null 2>&1 || { fail "$name: $dir/cachectl-remote --version fails"; ok=0; }
  # The installed binary caches: a miss, then a hit with the same output.
  local out1 out2
  out1=$(cd "$W" && CACHECTL_DIR=$W/cache-$name "$dir/cachectl" run -- echo "hi from $name" 2>&1) || ok=0
  out2=$(cd "$W" && CACHECTL_DIR=$W/cache-$name "$dir/cachectl" run -v -- echo "hi from $name" 2>&1) || ok=0
  [ "$out1" = "hi from $name" ] && [[ $out2 == "hi from $name"$'\n'"cachectl: hit"* ]] ||
    { fail "$name: cachectl run from $dir: '$out1' then '$out2'"; ok=0; }
  ((ok)) && pass "$name: $(tail -1 "$W/out")"
}

# 1. An explicit version, with and without its v.
run_install "$W/i1" CACHECTL_VERSION="$VERSION"
check_installed "version $VERSION" "$W/i1"
run_install "$W/i2" CACHECTL_VERSION="v$VERSION"
check_installed "version v$VERSION" "$W/i2"

# 2. latest (the default), through releases/latest/download/cachectl-version.txt.
run_install "$W/i3"
check_installed "latest" "$W/i3"

# 3. The release URL from CACHECTL_REPOSITORY and GITHUB_SERVER_URL, as the action passes them.
run_install "$W/i4" CACHECTL_RELEASE_URL= CACHECTL_REPOSITORY=OWNER/cachectl GITHUB_SERVER_URL="http://127.0.0.1:$PORT"
check_installed "CACHECTL_REPOSITORY" "$W/i4"

# 4. Failures: each names the problem and installs nothing.
run_install "$W/f1" CACHECTL_VERSION=9.9.8
expect_failure "tampered archive" "$W/f1" "checksum mismatch for cachectl-9.9.8-$TARGET.tar.gz"
run_install "$W/f2" CACHECTL_VERSION=9.9.7
expect_failure "missing version" "$W/f2" "cachectl 9.9.7 has no release for $TARGET"
run_install "$W/f3" CACHECTL_VERSION=9.9.6
expect_failure "missing checksum" "$W/f3" "no checksum file for cachectl 9.9.6"
run_install "$W/f4" CACHECTL_VERSION='1.0; rm -rf /'
expect_failure "bad version" "$W/f4" "is not a version"
run_install "$W/f5" RUNNER_OS=macOS
expect_failure "macOS runner" "$W/f5" "built for Linux only"
run_install "$W/f6" RUNNER_OS=Linux RUNNER_ARCH=ARM
expect_failure "32-bit ARM runner" "$W/f6" "no release binary for the ARM architecture"
run_install "$W/f7" CACHECTL_VERSION="$VERSION" CACHECTL_RELEASE_URL="http://127.0.0.1:$PORT/nobody/cachectl/releases"
expect_failure "wrong repository" "$W/f7" "cachectl $VERSION has no release for $TARGET"
# ARM64 runners get the aarch64 archive (absent here: the name in the error proves the mapping;
# on an aarch64 machine, X64 is the absent one).
other=$([ "$TARGET" = x86_64-unknown-linux-gnu ] && echo "ARM64 aarch64" || echo "X64 x86_64")
run_install "$W/f8" RUNNER_OS=Linux RUNNER_ARCH="${other%% *}" CACHECTL_VERSION="$VERSION"
expect_failure "RUNNER_ARCH=${other%% *}" "$W/f8" "no release for ${other#* }-unknown-linux-gnu"

# 5. A failed install leaves an earlier one as it was.
mkdir -p "$W/old"
printf 'old' >"$W/old/cachectl"
run_install "$W/old" CACHECTL_VERSION=9.9.8
if [ "$rc" != 0 ] && [ "$(cat "$W/old/cachectl")" = old ] && [ "$(ls -A "$W/old")" = cachectl ]; then
  pass "failed install over an earlier one: left as it was"
else
  fail "failed install over an earlier one: rc $rc, $(ls -A "$W/old" | tr '\n' ' ')"
fi

# 6. The action's own steps, as the runner would run them: the `run:` of action.yml's install
# step and of save/action.yml's gc step, with the env the runner gives them. The action is
# "fetched" into RUNNER_TEMP/../_actions/OWNER/cachectl/v1, from which it derives the repository.
step_script() { # FILE STEP-ID
  python3 -c 'import sys
try:
    from yaml import safe_load
except ImportError:
    from ruamel.yaml import YAML
    safe_load = YAML(typ="safe").load
steps = safe_load(open(sys.argv[1]))["runs"]["steps"]
print(next(s["run"] for s in steps if s.get("id") == sys.argv[2]))' "$1" "$2"
}
G=$W/gha
mkdir -p "$G/_actions/OWNER/cachectl" "$G/temp" "$G/workspace"
ln -s "$ROOT" "$G/_actions/OWNER/cachectl/v1"
for f in path env output; do : >"$G/$f"; done
step_script "$ROOT/action.yml" install >"$W/install-step.sh"
rc=0
(
  cd "$G/workspace"
  env GITHUB_ACTION_PATH="$G/_actions/OWNER/cachectl/v1" GITHUB_SERVER_URL="http://127.0.0.1:$PORT" \
    GITHUB_REPOSITORY=someone/else GITHUB_PATH="$G/path" GITHUB_ENV="$G/env" GITHUB_OUTPUT="$G/output" \
    GITHUB_RUN_ID=1234 GITHUB_RUN_ATTEMPT=2 RUNNER_TEMP="$G/temp" RUNNER_OS=Linux \
    RUNNER_ARCH="$([ "$TARGET" = x86_64-unknown-linux-gnu ] && echo X64 || echo ARM64)" \
    CACHECTL_VERSION=latest INPUT_REPOSITORY= INPUT_CACHE_DIR="$G/workspace/.cachectl" \
    INPUT_CACHE_KEY_PREFIX=cachectl JOB_ID=build \
    bash -e "$W/install-step.sh"
) >"$W/out" 2>&1 || rc=$?
arch=$([ "$TARGET" = x86_64-unknown-linux-gnu ] && echo X64 || echo ARM64)
key=cachectl-Linux-$arch-build-1234-2
if [ "$rc" != 0 ]; then
  fail "action.yml install step exited $rc:"
  sed 's/^/     /' "$W/out" >&2
elif [ "$(cat "$G/path")" != "$G/temp/cachectl/bin" ]; then
  fail "action.yml install step: GITHUB_PATH holds '$(cat "$G/path")'"
elif ! grep -qxF "CACHECTL_DIR=$G/workspace/.cachectl" "$G/env" ||
  ! grep -qxF "SETUP_CACHECTL_CACHE_KEY=$key" "$G/env"; then
  fail "action.yml install step: GITHUB_ENV holds: $(tr '\n' ' ' <"$G/env")"
elif ! grep -qxF "version=$VERSION" "$G/output" || ! grep -qxF "cache-key=$key" "$G/output" ||
  ! grep -qxF "restore-prefix=cachectl-Linux-$arch-build-" "$G/output"; then
  fail "action.yml install step: GITHUB_OUTPUT holds: $(tr '\n' ' ' <"$G/output")"
else
  check_installed "action.yml install step" "$G/temp/cachectl/bin"
fi

# save/action.yml's gc step: trims the directory the job filled, with the env the set-up step
# exported, and hands path and key to actions/cache/save.
(cd "$G/workspace" && CACHECTL_DIR=$G/workspace/.cachectl "$G/temp/cachectl/bin/cachectl" run -- echo filled >/dev/null)
: >"$G/output"
step_script "$ROOT/save/action.yml" gc >"$W/gc-step.sh"
rc=0
(
  cd "$G/workspace"
  env PATH="$G/temp/cachectl/bin:$PATH" GITHUB_OUTPUT="$G/output" \
    CACHECTL_DIR="$G/workspace/.cachectl" SETUP_CACHECTL_CACHE_KEY="$key" \
    INPUT_MAX_SIZE=1M INPUT_PATH= INPUT_KEY= \
    bash -e "$W/gc-step.sh"
) >"$W/out" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  fail "save/action.yml gc step exited $rc:"
  sed 's/^/     /' "$W/out" >&2
elif ! grep -qxF "path=$G/workspace/.cachectl" "$G/output" || ! grep -qxF "key=$key" "$G/output"; then
  fail "save/action.yml gc step: GITHUB_OUTPUT holds: $(tr '\n' ' ' <"$G/output")"
else
  pass "save/action.yml gc step: cachectl gc --max-size 1M, then path and key for actions/cache/save"
fi
# Without the set-up step's env, it says what is missing.
rc=0
(cd "$G/workspace" && env PATH="$G/temp/cachectl/bin:$PATH" GITHUB_OUTPUT="$G/output" \
  INPUT_MAX_SIZE= INPUT_PATH= INPUT_KEY= bash -e "$W/gc-step.sh") >"$W/out" 2>&1 || rc=$?
if [ "$rc" != 0 ] && grep -qF "run the set-up action" "$W/out"; then
  pass "save/action.yml gc step without the set-up step: fails and says why"
else
  fail "save/action.yml gc step without the set-up step: rc $rc: $(cat "$W/out")"
fi

if ((failures)); then
  echo "tests/action: $failures failure(s)" >&2
  exit 1
fi
echo "tests/action: all passed"
