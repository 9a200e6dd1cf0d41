#!/bin/bash
# SPDX-License-Identifier: MIT
#
# callgrind.sh: instructions per lookup, counted by valgrind's callgrind
# (hardware counters are not available on the shared CI machines).
#
#   bench/callgrind.sh [BUILD_DIR]
#
# Builds bench/lookup_count in BUILD_DIR (default /tmp/memslot-callgrind,
# release, -Dbench=true; the library has no vector code, so valgrind runs
# the production path) unless it exists,# then runs it under callgrind with --toggle-collect on the lookup function,
# so that only the lookups' own instructions are counted, and prints the
# count divided by the number of lookups for:
#   the per-vCPU cache hit (memslot_vcpu_gfn_to_slot)
#   random lookups through the set-wide cache (memslot_gfn_to_slot)
#   random lookups of the index alone (memslot_search)
#   translations of every page in gfn order (memslot_gfn_to_hva)
#   4 KiB hva-range walks (memslot_hva_iter_init and _next), per walk
#   a 4-byte guest read through a warm vCPU cache (memslot_vcpu_view_read)
#   marking one page dirty via a warm vCPU cache
#   (memslot_vcpu_mark_page_dirty: the hit plus one atomic OR)
# at 509 and 32764 slots.  Exits non-zero if a lookup returned a wrong slot,
# the per-vCPU hit costs more than MAX_HIT_IR instructions (default 25) or
# the mark more than MAX_MARK_IR (default 30).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-/tmp/memslot-callgrind}
count=${COUNT:-200000}
max_hit=${MAX_HIT_IR:-25}
max_mark=${MAX_MARK_IR:-30}

if [ ! -x "$build/bench/lookup_count" ]; then
	meson setup "$build" "$src" --buildtype=release -Dbench=true \
		-Dtests=disabled -Dexamples=false >/dev/null
fi
meson compile -C "$build" bench/lookup_count >/dev/null
driver=$build/bench/lookup_count
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ir MODE SLOTS FUNCTION: instructions per lookup inside FUNCTION.
ir() {
	local out=$tmp/$1-$2.out

	local toggles=() fn

	# FUNCTION may name several, joined by '+'.
	for fn in ${3//+/ }; do
		toggles+=(--toggle-collect="$fn")
	done
	valgrind --tool=callgrind --callgrind-out-file="$out" \
		"${toggles[@]}" "$driver" "$1" "$2" "$count" \
		>"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
	awk -v n="$count" '/^(summary|totals):/ { t = $2 }
		END { printf "%.1f", t / n }' "$out"
}

status=0
printf '%-44s %8s %8s\n' "path (instructions per lookup)" 509 32764
for spec in "vcpu:memslot_vcpu_gfn_to_slot:per-vCPU cache hit" \
	    "random:memslot_gfn_to_slot:random gfn, set-wide cache" \
	    "search:memslot_search:random gfn, index only" \
	    "map:memslot_gfn_to_hva:gfn -> hva, pages in order" \
	    "unmap:memslot_hva_iter_init+memslot_hva_iter_next:4 KiB hva walk" \
	    "read4:memslot_vcpu_view_read:4-byte read, warm vCPU cache" \
	    "mark:memslot_vcpu_mark_page_dirty:mark dirty, warm vCPU cache"; do
	IFS=: read -r mode fn label <<<"$spec"
	a=$(ir "$mode" 509 "$fn")
	b=$(ir "$mode" 32764 "$fn")
	printf '%-44s %8s %8s\n' "$label ($fn)" "$a" "$b"
	if [ "$mode" = vcpu ] &&
	   awk -v a="$a" -v b="$b" -v m="$max_hit" \
		'BEGIN { exit !(a > m || b > m) }'; then
		echo "per-vCPU hit above $max_hit instructions" >&2
		status=1
	fi
	if [ "$mode" = mark ] &&
	   awk -v a="$a" -v b="$b" -v m="$max_mark" \
		'BEGIN { exit !(a > m || b > m) }'; then
		echo "mark above $max_mark instructions" >&2
		status=1
	fi
done
exit $status
