#!/usr/bin/env bash
# Download a cachectl release for this Linux machine, verify its SHA-256 checksum, and install
# `cachectl` and `cachectl-remote`. Used by the GitHub Action (action.yml); works anywhere with
# bash, curl, tar and sha256sum (or shasum). Nothing is installed unless the checksum matches.
#
# Settings (environment):
#   CACHECTL_VERSION      `latest` (default), or a version: 0.2.0 or v0.2.0
#   CACHECTL_INSTALL_DIR  where the two binaries go (default ~/.local/bin); created if missing
#   CACHECTL_REPOSITORY   owner/name of the repository whose releases to use; the release URL
#                         is then $GITHUB_SERVER_URL (default https://github.com)/OWNER/NAME/releases
#   CACHECTL_RELEASE_URL  the releases URL itself (overrides CACHECTL_REPOSITORY); the files are
#                         read from URL/download/vVERSION/FILE, and `latest` resolves through
#                         URL/latest/download/cachectl-version.txt, as GitHub serves them
#   CACHECTL_TARGET       the target triple (default: from RUNNER_OS/RUNNER_ARCH on GitHub, else
#                         from uname: x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu)
#
# Prints `cachectl --version` of what it installed, then `installed cachectl VERSION (TARGET) in
# DIR`. Exits 1, with one line saying why, when the version or target has no release, the download
# fails, or the checksum does not match.
set -euo pipefail

die() { echo "cachectl install: error: $*" >&2; exit 1; }

version=${CACHECTL_VERSION:-latest}
install_dir=${CACHECTL_INSTALL_DIR:-$HOME/.local/bin}
if [ -n "${CACHECTL_RELEASE_URL:-}" ]; then
  base=${CACHECTL_RELEASE_URL%/}
elif [ -n "${CACHECTL_REPOSITORY:-}" ]; then
  base=${GITHUB_SERVER_URL:-https://github.com}/$CACHECTL_REPOSITORY/releases
else
  die "set CACHECTL_REPOSITORY (owner/name) or CACHECTL_RELEASE_URL"
fi

# The target: Linux x86_64 or aarch64, the two architectures releases are built for.
if [ -n "${CACHECTL_TARGET:-}" ]; then
  target=$CACHECTL_TARGET
else
  os=${RUNNER_OS:-$(uname -s)}
  case $os in
  Linux) ;;
  *) die "release binaries are built for Linux only, and this runner is $os; on other systems build from source: cargo install --locked --git <repository URL> cachectl" ;;
  esac
  arch=${RUNNER_ARCH:-$(uname -m)}
  case $arch in
  X64 | x86_64 | amd64) target=x86_64-unknown-linux-gnu ;;
  ARM64 | aarch64 | arm64) target=aarch64-unknown-linux-gnu ;;
  *) die "no release binary for the $arch architecture (there are x86_64 and aarch64 ones); build from source: cargo install --locked --git <repository URL> cachectl" ;;
  esac
fi

command -v curl >/dev/null || die "curl is not installed"
command -v tar >/dev/null || die "tar is not installed"
if command -v sha256sum >/dev/null; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed: cannot verify the download"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cachectl-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# fetch URL FILE: download, with one clear line when the server says no.
fetch() {
  local code
  code=$(curl --silent --show-error --location --retry 3 --retry-delay 1 \
    --connect-timeout 20 --max-time 300 --output "$2" --write-out '%{http_code}' "$1") ||
    die "could not download $1 (curl exit $?)"
  case $code in
  200) ;;
  404) return 4 ;;
  *) die "could not download $1: HTTP $code" ;;
  esac
}

if [ "$version" = latest ]; then
  url=$base/latest/download/cachectl-version.txt
  fetch "$url" "$tmp/version" || die "no latest release found at $base (no $url)"
  version=$(tr -d ' \t\r\n' <"$tmp/version")
fi
version=${version#v}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.+-]+)?$ ]] ||
  die "'$version' is not a version (expected latest, 1.2.3 or v1.2.3)"

name=cachectl-$version-$target
url=$base/download/v$version/$name.tar.gz
fetch "$url" "$tmp/$name.tar.gz" ||
  die "cachectl $version has no release for $target: $url was not found (is the version right? releases: $base)"
fetch "$url.sha256" "$tmp/$name.tar.gz.sha256" ||
  die "no checksum file for cachectl $version: $url.sha256 was not found; refusing to install an unverified binary"

expected=$(cut -d' ' -f1 <"$tmp/$name.tar.gz.sha256" | tr 'A-F' 'a-f')
[[ $expected =~ ^[0-9a-f]{64}$ ]] || die "$url.sha256 does not hold a SHA-256 checksum"
actual=$(sha256 "$tmp/$name.tar.gz")
[ "$actual" = "$expected" ] ||
  die "checksum mismatch for $name.tar.gz: expected $expected (from $name.tar.gz.sha256), got $actual; nothing was installed"

tar -xzf "$tmp/$name.tar.gz" -C "$tmp" || die "could not unpack $name.tar.gz"
for bin in cachectl cachectl-remote; do
  [ -f "$tmp/$name/$bin" ] || die "$name.tar.gz has no $name/$bin"
done
# Check that the binary runs here before anything is put in place.
got=$("$tmp/$name/cachectl" --version 2>&1) || die "the downloaded cachectl does not run on this machine: $got"

mkdir -p "$install_dir"
for bin in cachectl cachectl-remote; do
  # Copy next to the destination, then rename: a concurrent user never sees half a binary.
  cp "$tmp/$name/$bin" "$install_dir/.$bin.tmp.$$"
  chmod 755 "$install_dir/.$bin.tmp.$$"
  mv -f "$install_dir/.$bin.tmp.$$" "$install_dir/$bin"
done
echo "$got"
echo "installed cachectl $version ($target) in $install_dir"
