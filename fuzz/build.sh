#!/bin/sh
# SPDX-License-Identifier: MIT
# Build the libFuzzer harness with ASan and UBSan: fuzz/build.sh [BUILD_DIR]
# (default /tmp/memslot-fuzz).  Needs clang; prints the binary's path.
set -eu

out=${1:-/tmp/memslot-fuzz}
src=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC_FUZZ:-clang}

mkdir -p "$out"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
"$cc" -std=c11 -g -O1 -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$src/include" -I"$src/lib" -I"$src/tests" \
	"$src"/lib/*.c "$src/tests/refmodel.c" "$src/fuzz/fuzz_ops.c" \
	$(pkg-config --cflags --libs liburcu-memb) -pthread \
	-o "$out/fuzz_ops"
echo "$out/fuzz_ops"
