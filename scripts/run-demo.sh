#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run-demo.sh: install what is missing (needs root for apt-get), build
# libmemslot in release mode and run examples/demo, which lays out a small
# PC-like guest's memory and walks through lookups and slot changes.
#
# Environment: BUILD_DIR (default ./build-demo).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-$PWD/build-demo}

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_packages "${DEMO_PACKAGES[@]}"

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
	meson setup "$BUILD_DIR" --buildtype=release \
		-Dtests=disabled -Dbench=false -Dexamples=true
fi
meson compile -C "$BUILD_DIR" -j 2 examples/demo

echo
echo "==== $BUILD_DIR/examples/demo ===="
"$BUILD_DIR/examples/demo"
