/* SPDX-License-Identifier: MIT */
/*
 * The generic path of <memslot/nospec.h>, whatever the host architecture.
 * The macro is defined here rather than only on the command line so that
 * this file cannot silently test the arch path if the build drops the flag.
 */
#ifndef MEMSLOT_NOSPEC_GENERIC
#define MEMSLOT_NOSPEC_GENERIC 1
#endif

#include <memslot/nospec.h>

#include "nospec_generic.h"

/* Out of line on purpose: the test must see what a caller gets, not a
 * version the optimiser folded with constant arguments. */
uint64_t generic_index_mask(uint64_t index, uint64_t size)
{
	return memslot_index_mask_nospec(index, size);
}

uint64_t generic_array_index(uint64_t index, uint64_t size)
{
	return memslot_array_index_nospec(index, size);
}
