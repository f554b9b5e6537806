#!/usr/bin/env bash
# dsmoe as users install it, from this checkout:
#   1. npm pack (prepack: dist/ and this platform's prebuilt addon, from the current sources)
#   2. npm install -g --prefix <tmp> <tarball>, with compilers replaced by stubs that fail: the
#      prebuild must be used; then, from another folder, the installed `dsmoe --version`,
#      `dsmoe train --preset tiny --steps 5` and `dsmoe info` on its checkpoint
#   3. as a dependency with --ignore-scripts (what npm's install-scripts policy does to an
#      unapproved package): the prebuild still loads, nothing ran at install
#   4. npx --yes <tarball> --help from an empty folder
#   5. DSMOE_BUILD_FROM_SOURCE=1 npm install -g …: compiles, and the installed CLI uses that build
#      (skip with DSMOE_CHECK_SOURCE=0)
# Everything goes to a temporary folder that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
work="$(mktemp -d "${TMPDIR:-/tmp}/dsmoe-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

say() { printf '[check-install] %s\n' "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- 1. pack -------------------------------------------------------------------------------------
t=$(now)
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; die "npm pack"; }
pack_s=$(secs "$t")
grep -E '^\[dsmoe prepack\]' "$work/pack.log" || true
tarball="$(ls "$work"/dsmoe-*.tgz)"
say "npm pack: $(basename "$tarball"), $(du -h "$tarball" | cut -f1), ${pack_s} s"
tar tzf "$tarball" >"$work/contents"
grep -qx 'package/dist/cli/index.js' "$work/contents" || die "the package has no dist/cli/index.js"
prebuild_rel="$(node -p "require('./dist/native/loader').prebuildName()")"
grep -qx "package/$prebuild_rel" "$work/contents" || die "the package has no $prebuild_rel"
if grep -qE '^package/(build|build-[^/]*|node_modules)/' "$work/contents"; then die "build output or node_modules packed"; fi
say "package holds dist/ and $prebuild_rel"

# --- 2. global install, no compiler reachable ----------------------------------------------------
nocc="$work/no-compilers"
mkdir -p "$nocc"
for c in cc gcc g++ c++ clang clang++ nvcc cmake make ninja python3 python; do
  printf '#!/bin/sh\necho "check-install: %s was called, but installing with a prebuild must not compile" >&2\nexit 99\n' "$c" >"$nocc/$c"
  chmod +x "$nocc/$c"
done
prefix="$work/global"
t=$(now)
PATH="$nocc:$PATH" npm install -g --prefix "$prefix" --foreground-scripts "$tarball" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; die "npm install -g (prebuild)"; }
install_s=$(secs "$t")
grep -E '^\[dsmoe\]|install-scripts' "$work/install.log" || true
pkg="$prefix/lib/node_modules/dsmoe"
[ ! -e "$pkg/build" ] || die "the install built something ($pkg/build exists)"
used="$(cd "$work" && node -p "require('$pkg/dist/native/addon').addonPath()")"
[ "$used" = "$pkg/$prebuild_rel" ] || die "the installed CLI would load $used, not the prebuild"
say "npm install -g (prebuild, no compiler on PATH): ${install_s} s; addon: $used"
awk -v s="$install_s" 'BEGIN { exit !(s > 60) }' && say "warning: the install took over a minute"
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && command -v objdump >/dev/null; then
  bash scripts/check-isa-leaks.sh "$pkg/$prebuild_rel"
fi

run_dir="$work/elsewhere"
mkdir -p "$run_dir"
dsmoe="$prefix/bin/dsmoe"
(
  cd "$run_dir"
  export DSMOE_THREADS="${DSMOE_THREADS:-2}"
  say "\$ dsmoe --version"; "$dsmoe" --version
  say "\$ dsmoe train --preset tiny --steps 5 --out runs/tiny"
  "$dsmoe" train --preset tiny --steps 5 --out runs/tiny
  say "\$ dsmoe info runs/tiny"; "$dsmoe" info runs/tiny
)
[ -f "$run_dir/runs/tiny/config.json" ] || die "no checkpoint in $run_dir/runs/tiny"

# --- 3. as a dependency, install scripts not run ---------------------------------------------------
app="$work/app"
mkdir -p "$app"
(
  cd "$app"
  printf '{ "name": "app", "version": "1.0.0", "private": true }\n' >package.json
  t=$(now)
  PATH="$nocc:$PATH" npm install --ignore-scripts "$tarball" >"$work/dep.log" 2>&1 || { cat "$work/dep.log"; die "npm install (dependency)"; }
  say "npm install --ignore-scripts <tarball> as a dependency: $(secs "$t") s"
  out="$(npx --no dsmoe info "$run_dir/runs/tiny" --json)" || die "dsmoe info from the dependency install"
  node -e 'JSON.parse(process.argv[1])' "$out" || die "dsmoe info --json gave no JSON"
  used="$(node -p "require('dsmoe/dist/native/addon').addonPath()")"
  case "$used" in */node_modules/dsmoe/prebuilds/*) ;; *) die "the dependency would load $used, not its prebuild" ;; esac
  say "dependency without its install script: dsmoe info works with $used"
)

# --- 4. npx <tarball> from an empty folder --------------------------------------------------------
empty="$work/empty"
mkdir -p "$empty"
(
  cd "$empty"
  rel="$(realpath --relative-to=. "$tarball")" # npx takes ./ ../ paths as packages (an absolute one as a command)
  say "\$ npx --yes $rel --help   (in an empty folder, fresh npm cache)"
  PATH="$nocc:$PATH" npx --yes --cache "$work/npx-cache" "$rel" --help >"$work/npx.out" 2>"$work/npx.err" ||
    { cat "$work/npx.err"; die "npx <tarball> --help"; }
  head -n 3 "$work/npx.out"
  grep -q '^Usage: dsmoe' "$work/npx.out" || die "npx --help printed no usage"
  [ -z "$(ls -A "$empty")" ] || die "npx left files in the folder it ran in"
)

# --- 5. DSMOE_BUILD_FROM_SOURCE=1 ----------------------------------------------------------------
if [ "${DSMOE_CHECK_SOURCE:-1}" != 0 ]; then
  prefix_src="$work/global-src"
  t=$(now)
  DSMOE_BUILD_FROM_SOURCE=1 npm install -g --prefix "$prefix_src" --foreground-scripts "$tarball" >"$work/src.log" 2>&1 ||
    { cat "$work/src.log"; die "DSMOE_BUILD_FROM_SOURCE=1 npm install -g"; }
  src_s=$(secs "$t")
  grep -E '^\[dsmoe\]' "$work/src.log" || true
  pkg_src="$prefix_src/lib/node_modules/dsmoe"
  used="$(cd "$work" && node -p "require('$pkg_src/dist/native/addon').addonPath()")"
  [ "$used" = "$pkg_src/build/Release/dsmoe.node" ] || die "after DSMOE_BUILD_FROM_SOURCE=1 the CLI would load $used"
  (cd "$run_dir" && "$prefix_src/bin/dsmoe" info runs/tiny >/dev/null) || die "dsmoe info with the addon built at install"
  say "DSMOE_BUILD_FROM_SOURCE=1 npm install -g: ${src_s} s; addon: $used; dsmoe info works"
fi

say "ok: pack ${pack_s} s, global install with the prebuild ${install_s} s${src_s:+, from source ${src_s} s}"
