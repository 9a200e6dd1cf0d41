#!/bin/bash
# SPDX-License-Identifier: MIT
#
# check-symbols.sh LIBRARY.so [HEADER_DIR]
#
# Fails when the shared library exports a symbol outside the memslot_
# namespace (a helper that escaped the version script), or, given the
# public header directory, when a function declared there is not exported
# (declared but never implemented, or hidden by mistake).
set -euo pipefail
export LC_ALL=C

lib=${1:?usage: check-symbols.sh LIBRARY.so [HEADER_DIR]}
hdrdir=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Defined dynamic symbols, without their @VERSION suffix.  Absolute (A)
# symbols are version nodes such as LIBMEMSLOT_0, not code or data.
nm -D --defined-only "$lib" >"$tmp/nm"
awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/exported"

# Symbols the linker may add on its own.
linker_syms='^(_init|_fini|_edata|_end|__bss_start|_DYNAMIC|_GLOBAL_OFFSET_TABLE_)$'

status=0
stray=$(grep -Ev '^memslot_' "$tmp/exported" | grep -Ev "$linker_syms" || true)
if [ -n "$stray" ]; then
	echo "FAIL: $lib exports symbols outside memslot_*:"
	printf '  %s\n' $stray
	status=1
fi

count=$(grep -c '^memslot_' "$tmp/exported" || true)
if [ "$count" -eq 0 ]; then
	echo "FAIL: $lib exports no memslot_* symbol"
	status=1
fi

if [ -n "$hdrdir" ]; then
	# A declaration starts in column 0 with its return type; doc comments
	# start with "/*" or " *" and static inline functions are not exported.
	grep -hE '^[a-z].*\bmemslot_[a-z0-9_]+\(' "$hdrdir"/*.h |
		grep -v 'static inline' |
		grep -oE '\bmemslot_[a-z0-9_]+\(' |
		sed 's/($//' | sort -u >"$tmp/declared"
	missing=$(comm -23 "$tmp/declared" "$tmp/exported")
	if [ -n "$missing" ]; then
		echo "FAIL: declared in $hdrdir but not exported by $lib:"
		printf '  %s\n' $missing
		status=1
	fi
	undeclared=$(comm -13 "$tmp/declared" "$tmp/exported")
	if [ -n "$undeclared" ]; then
		echo "FAIL: exported by $lib but declared in no public header:"
		printf '  %s\n' $undeclared
		status=1
	fi
	echo "$(wc -l <"$tmp/declared") functions declared in $hdrdir"
fi

echo "$count memslot_* symbols exported by $(basename "$lib")"
[ "$status" -eq 0 ] && echo "PASS: exported symbols match the public API"
exit "$status"
