/* SPDX-License-Identifier: MIT */
/*
 * Speculation-safe index clamping.
 *
 * A bounds check is a branch, and a CPU may speculate past it with an index
 * that failed it (Spectre v1).  After the check, pass the index through
 * memslot_array_index_nospec(): the result equals the index when it is in
 * bounds and 0 otherwise, computed without a branch, so even a mispredicted
 * path cannot form an out-of-bounds address.
 */
#ifndef MEMSLOT_NOSPEC_H
#define MEMSLOT_NOSPEC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * memslot_index_mask_nospec() - all ones if @index < @size, else 0
 * @index: untrusted index
 * @size: number of elements; 0 gives 0 for every @index
 *
 * x86-64: cmp and sbb, two instructions with no branch.  arm64: cmp and
 * sbc followed by CSDB, the barrier arm64 needs so the mask itself is not
 * predicted.  Elsewhere: a portable arithmetic form hidden from the
 * optimiser; it is exact for values up to INT64_MAX and returns 0 (the safe
 * answer) for larger ones.
 *
 * Return: all ones if @index < @size, otherwise 0.
 */
static inline uint64_t memslot_index_mask_nospec(uint64_t index, uint64_t size)
{
	uint64_t mask;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(MEMSLOT_NOSPEC_GENERIC)
	__asm__("cmpq %2, %1\n\tsbbq %0, %0"
		: "=r"(mask)
		: "r"(index), "r"(size)
		: "cc");
#elif defined(__aarch64__) && defined(__GNUC__) && !defined(MEMSLOT_NOSPEC_GENERIC)
	__asm__ volatile("cmp %1, %2\n\tsbc %0, xzr, xzr"
			 : "=r"(mask)
			 : "r"(index), "r"(size)
			 : "cc");
	__asm__ volatile("hint #0x14" ::: "memory"); /* CSDB */
#else
	mask = (uint64_t)(~(int64_t)(index | (size - 1 - index)) >> 63);
#if defined(__GNUC__)
	/* Keep the compiler from turning the mask back into a branch. */
	__asm__("" : "+r"(mask));
#endif
#endif
	return mask;
}

/**
 * memslot_array_index_nospec() - clamp @index to [0, @size) without a branch
 * @index: untrusted index, already checked against @size by the caller
 * @size: number of elements
 *
 * Return: @index if @index < @size, otherwise 0.
 */
static inline uint64_t memslot_array_index_nospec(uint64_t index, uint64_t size)
{
	return index & memslot_index_mask_nospec(index, size);
}

#ifdef __cplusplus
}
#endif

#endif /* MEMSLOT_NOSPEC_H */
