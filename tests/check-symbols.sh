#!/bin/bash
# SPDX-License-Identifier: MIT
#
# check-symbols.sh LIBRARY.so [HEADER_DIR [MAP]]
#
# Fails when the shared library exports a symbol outside the memslot_
# namespace (a helper that escaped the version script).  Given the public
# header directory, fails when a function declared there is not exported
# (declared but never implemented, or hidden by mistake) or an exported one
# is declared nowhere.  Given the version script too, fails when its list
# of global symbols differs from the declared functions or from what the
# library exports.  Each failure names the symbol, the file that lacks it
# and the edit that fixes it.
set -euo pipefail
export LC_ALL=C

lib=${1:?usage: check-symbols.sh LIBRARY.so [HEADER_DIR [MAP]]}
hdrdir=${2:-}
map=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
libname=$(basename "$lib")

# fail SYMBOL MESSAGE: report one problem with one symbol.
fail() {
	echo "FAIL: $1: $2"
	status=1
}

# Defined dynamic symbols, without their @VERSION suffix.  Absolute (A)
# symbols are version nodes such as LIBMEMSLOT_0, not code or data.
nm -D --defined-only "$lib" >"$tmp/nm"
awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/exported"

# Symbols the linker may add on its own.
linker_syms='^(_init|_fini|_edata|_end|__bss_start|_DYNAMIC|_GLOBAL_OFFSET_TABLE_)$'

for s in $(grep -Ev '^memslot_' "$tmp/exported" | grep -Ev "$linker_syms" || true); do
	fail "$s" "exported by $libname outside the memslot_ namespace"
done

count=$(grep -c '^memslot_' "$tmp/exported" || true)
if [ "$count" -eq 0 ]; then
	echo "FAIL: $libname exports no memslot_* symbol"
	status=1
fi

if [ -n "$hdrdir" ]; then
	# "name file:line" for every declared function.  A declaration starts
	# in column 0 with its return type; doc comments start with "/*" or
	# " *", and static inline functions are not exported.
	for h in "$hdrdir"/*.h; do
		{ grep -nE '^[a-z].*\bmemslot_[a-z0-9_]+\(' "$h" || true; } |
			{ grep -v 'static inline' || true; } |
			sed -E "s|^([0-9]+):[^(]*\b(memslot_[a-z0-9_]+)\(.*|\2 $h:\1|"
	done | sort -u -k1,1 >"$tmp/declared_at"
	cut -d' ' -f1 "$tmp/declared_at" >"$tmp/declared"

	while read -r s where; do
		fail "$s" "declared at $where but not exported by $libname (not defined in lib/, or not listed in the version script)"
	done < <(join "$tmp/declared_at" <(comm -23 "$tmp/declared" "$tmp/exported"))
	for s in $(comm -13 "$tmp/declared" "$tmp/exported" | grep -Ev "$linker_syms" || true); do
		fail "$s" "exported by $libname but declared in no header of $hdrdir"
	done
	echo "$(wc -l <"$tmp/declared") functions declared in $hdrdir"
fi

if [ -n "$map" ]; then
	# The global: list: one "name;" per line; a wildcard would let
	# helpers escape again.
	awk '/^[ \t]*global:/ { g = 1; next } /^[ \t]*local:/ { g = 0 }
		g && /[^ \t]/ { print }' "$map" >"$tmp/map_lines"
	if grep -q '\*' "$tmp/map_lines"; then
		echo "FAIL: $map lists a wildcard; list every exported function by name"
		status=1
	fi
	sed -nE 's/^[ \t]*(memslot_[a-z0-9_]+);.*/\1/p' "$tmp/map_lines" | sort >"$tmp/listed"
	for s in $(sort "$tmp/listed" | uniq -d); do
		fail "$s" "listed twice in $map: delete one line"
	done
	sort -u -o "$tmp/listed" "$tmp/listed"

	while read -r s where; do
		fail "$s" "declared at $where but missing from $map: add the line '	$s;' to its global: list"
	done < <(join "$tmp/declared_at" <(comm -23 "$tmp/declared" "$tmp/listed"))
	for s in $(comm -13 "$tmp/declared" "$tmp/listed"); do
		fail "$s" "listed in $map but declared in no header of $hdrdir: delete its line from the map, or declare it"
	done
	for s in $(comm -13 "$tmp/listed" "$tmp/exported" | grep -Ev "$linker_syms" || true); do
		fail "$s" "exported by $libname but not listed in $map"
	done
	echo "$(wc -l <"$tmp/listed") functions listed in $map"
fi

echo "$count memslot_* symbols exported by $libname"
[ "$status" -eq 0 ] && echo "PASS: exported symbols match the public API"
exit "$status"
