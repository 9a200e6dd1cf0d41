#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Checks the machine code of memslot_slot_gfn_to_hva() in the built library:
# the guest-controlled page offset must be clamped without a branch before
# it forms the host address.  On x86-64 the clamp is "cmp; sbb M,M" (M is 0
# or all ones) followed by "and M,X"; between the sbb and the instruction
# that adds the clamped offset X to the base there must be no conditional
# jump, or a mispredicted bounds check could still reach an address built
# from the raw offset.
#
# Usage: check-nospec-asm.sh LIBRARY [FUNCTION]
# Exit: 0 ok, 1 the clamp is missing or branchy, 77 skipped (not x86-64,
# no objdump).

set -u
lib=${1:?usage: $0 LIBRARY [FUNCTION]}
fn=${2:-memslot_slot_gfn_to_hva}

command -v objdump >/dev/null || { echo "SKIP: no objdump"; exit 77; }
if ! objdump -f "$lib" | grep -q 'x86-64'; then
	echo "SKIP: $lib is not x86-64 code"
	exit 77
fi

# The function's instructions, one "mnemonic operands" per line.
body=$(objdump -d --no-show-raw-insn "$lib" |
	awk -v fn="<$fn>:" '$2 == fn { p = 1; next }
		p && NF == 0 { exit }
		p { sub(/^[ \t]*[0-9a-f]+:[ \t]*/, ""); print }')
if [ -z "$body" ]; then
	echo "FAIL: $fn not found in $lib"
	exit 1
fi

printf '%s\n' "$body" | awk '
	# Register operands: "sbb %rdi,%rdi" -> a = %rdi, b = %rdi.
	function ops(line, parts) {
		sub(/^[a-z]+[ \t]+/, "", line)
		return split(line, parts, ",")
	}
	function reads(line, reg) {
		return index(line, reg) > 0
	}
	{ insn[NR] = $0; mn[NR] = $1 }
	END {
		for (i = 2; i <= NR; i++) {
			if (mn[i] !~ /^sbb/ || mn[i - 1] !~ /^cmp/)
				continue
			if (ops(insn[i], o) != 2 || o[1] != o[2])
				continue
			mask = o[1]
			if (check(i + 1, mask))
				exit 0
		}
		print "FAIL: no branch-free cmp/sbb clamp feeding the address"
		for (i = 1; i <= NR; i++)
			print "  " insn[i]
		exit 1
	}
	# From the sbb on: find the "and" of MASK with the offset (either
	# operand order; AT&T syntax puts the result in the second), then the
	# add/lea that combines the result X (possibly shifted) with the base;
	# no conditional jump on the way.
	function check(from, mask,    j, x, o2) {
		x = ""
		for (j = from; j <= NR; j++) {
			if (mn[j] ~ /^j/ && mn[j] !~ /^jmp/) {
				print "conditional jump after the clamp: " insn[j]
				return 0
			}
			if (mn[j] ~ /^ret/)
				return 0
			if (x == "" && mn[j] ~ /^and/ && ops(insn[j], o2) == 2 &&
			    (o2[1] == mask || o2[2] == mask)) {
				x = o2[2]
				continue
			}
			if (x != "" && mn[j] ~ /^(add|lea)/ && reads(insn[j], x)) {
				print "ok: " insn[from - 2] " / " insn[from - 1] \
				      " ... " insn[j]
				return 1
			}
		}
		return 0
	}
'
