#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the libFuzzer harness with ASan and UBSan: fuzz/build.sh [BUILD_DIR]
# (default /tmp/memslot-fuzz).  BUILD_DIR is a meson build directory with
# -Dfuzz=enabled (set up on first use, with clang or CC_FUZZ); the target
# is fuzz/meson.build's fuzz_ops.  Prints the binary's path.
set -eu

out=${1:-/tmp/memslot-fuzz}
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC_FUZZ:-clang}

mkdir -p "$out"
if [ ! -f "$out/build.ninja" ]; then
	CC=$cc meson setup "$out" "$src" --buildtype=debugoptimized \
		-Dfuzz=enabled -Dwerror=true -Dtests=disabled -Dbench=false \
		-Dexamples=false -Ddocs=disabled >"$out/fuzz-setup.log" 2>&1 ||
		{ cat "$out/fuzz-setup.log" >&2; exit 1; }
fi
# ninja rebuilds only what changed since the last run.
meson compile -C "$out" -j "${JOBS:-2}" fuzz/fuzz_ops >"$out/fuzz-build.log" 2>&1 ||
	{ cat "$out/fuzz-build.log" >&2; exit 1; }
echo "$out/fuzz/fuzz_ops"
