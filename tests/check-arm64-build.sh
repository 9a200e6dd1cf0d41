#!/bin/bash
# SPDX-License-Identifier: MIT
#
# check-arm64-build.sh SRCDIR: the library must build on arm64.  Cross-
# compiles every lib/*.c for aarch64 with clang and Debian's arm64 libc
# headers (libc6-dev-arm64-cross), warnings as errors, and checks that the
# arm64 index clamp (cmp, sbc, CSDB) is in memslot_slot_gfn_to_hva.
# lib/rcu.c is left out: liburcu's headers are installed per architecture.
# Exits 77 (skip) where clang or the arm64 headers are missing.
set -euo pipefail

src=${1:?usage: check-arm64-build.sh SRCDIR}
sysroot=/usr/aarch64-linux-gnu

if ! command -v clang >/dev/null || [ ! -d "$sysroot/include" ]; then
	echo "skip: needs clang and libc6-dev-arm64-cross"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in "$src"/lib/*.c; do
	[ "$(basename "$f")" = rcu.c ] && continue
	clang --target=aarch64-linux-gnu --sysroot="$sysroot" \
		-isystem "$sysroot/include" -std=c11 -O2 \
		-Wall -Wextra -Werror -I"$src/include" -I"$src/lib" \
		-c "$f" -o "$tmp/$(basename "$f").o"
done
echo "arm64: $(ls "$tmp"/*.o | wc -l) objects built"

objdump=$(command -v llvm-objdump-14 || command -v llvm-objdump || true)
if [ -z "$objdump" ]; then
	echo "no llvm-objdump: clamp check skipped"
	exit 0
fi
# awk reads to the end (no early exit): objdump must not die of SIGPIPE.
body=$("$objdump" -d "$tmp/view.c.o" |
	awk '/<memslot_slot_gfn_to_hva>:/ { on = 1; next } /^$/ { on = 0 } on')
for insn in csdb ngc; do
	if ! grep -qw "$insn" <<<"$body"; then
		echo "arm64 memslot_slot_gfn_to_hva has no $insn: clamp missing"
		exit 1
	fi
done
echo "arm64: gfn_to_hva clamps with cmp/sbc and csdb"
